// Uploads with progress: each file chosen in a form's file input is sent
// on its own to /ui/attachments as soon as it is chosen, with a progress
// bar; the form then carries the file's id in a hidden "attachment" field
// and is sent without the file. Without this script the form posts the
// files itself (multipart), to the same handler.
(function () {
  'use strict';
  if (!window.XMLHttpRequest || !window.FormData || !window.JSON) return;

  function setup(box) {
    var form = box.closest('form');
    var input = box.querySelector('input[type=file]');
    var list = box.querySelector('.uploads');
    var errors = box.querySelector('.upload-errors');
    var csrf = form && form.querySelector('input[name=csrf]');
    if (!form || !input || !list || !errors || !csrf) return null;
    var kind = box.getAttribute('data-upload');
    var msg = function (k) { return box.getAttribute('data-msg-' + k) || ''; };
    var pending = 0, submitting = false;

    function showError(name, text) {
      var p = document.createElement('p');
      p.className = 'field-error';
      p.setAttribute('role', 'alert');
      if (name) {
        var n = document.createElement('span');
        n.className = 'file-name';
        n.textContent = name;
        p.appendChild(n);
        p.appendChild(document.createTextNode(': '));
      }
      p.appendChild(document.createTextNode(text));
      errors.appendChild(p);
    }

    function finished() {
      pending--;
      if (pending === 0 && submitting) {
        submitting = false;
        var wait = box.querySelector('.upload-wait');
        if (wait) wait.remove();
        if (!errors.querySelector('.field-error')) form.submit();
      }
    }

    function send(file) {
      var li = document.createElement('li');
      li.className = 'upload';
      var name = document.createElement('span');
      name.className = 'file-name';
      name.textContent = file.name;
      var bar = document.createElement('progress');
      bar.max = 100;
      bar.value = 0;
      var state = document.createElement('span');
      state.className = 'upload-state';
      state.textContent = msg('uploading');
      li.appendChild(name);
      li.appendChild(bar);
      li.appendChild(state);
      list.appendChild(li);
      pending++;
      var xhr = new XMLHttpRequest();
      xhr.open('POST', '/ui/attachments?for=' + encodeURIComponent(kind));
      xhr.setRequestHeader('X-CSRF-Token', csrf.value);
      xhr.setRequestHeader('X-File-Name', encodeURIComponent(file.name));
      xhr.setRequestHeader('Content-Type', file.type || 'application/octet-stream');
      xhr.upload.onprogress = function (e) {
        if (e.lengthComputable && e.total > 0) bar.value = Math.round(e.loaded * 100 / e.total);
      };
      xhr.onload = function () {
        var res = null;
        try { res = JSON.parse(xhr.responseText); } catch (err) { res = null; }
        if (xhr.status === 201 && res && res.id) {
          bar.value = 100;
          li.classList.add('done');
          state.textContent = msg('done');
          var hidden = document.createElement('input');
          hidden.type = 'hidden';
          hidden.name = 'attachment';
          hidden.value = res.id;
          li.appendChild(hidden);
          var named = document.createElement('input');
          named.type = 'hidden';
          named.name = 'attachment_name';
          named.value = res.id + '/' + res.size + '/' + file.name;
          li.appendChild(named);
          var rm = document.createElement('button');
          rm.type = 'button';
          rm.className = 'link remove';
          rm.textContent = msg('remove');
          rm.addEventListener('click', function () { li.remove(); });
          li.appendChild(rm);
        } else {
          li.remove();
          showError(file.name, (res && res.error) || msg('failed'));
        }
        finished();
      };
      xhr.onerror = function () {
        li.remove();
        showError(file.name, msg('failed'));
        finished();
      };
      xhr.send(file);
    }

    return {
      change: function () {
        var files = Array.prototype.slice.call(input.files || []);
        if (!files.length) return;
        var old = errors.querySelectorAll('.field-error');
        for (var i = 0; i < old.length; i++) old[i].remove();
        files.forEach(send);
        // The files travel on their own: the form is sent without them.
        input.value = '';
      },
      submit: function (e) {
        if (pending === 0) return;
        e.preventDefault();
        submitting = true;
        if (!box.querySelector('.upload-wait')) {
          var p = document.createElement('p');
          p.className = 'hint upload-wait';
          p.setAttribute('role', 'status');
          p.textContent = msg('wait');
          list.after(p);
        }
      }
    };
  }

  // Set up on first use, so forms a live refresh put in the page work too.
  function of(box) {
    if (!box) return null;
    if (!box.uploader) box.uploader = setup(box);
    return box.uploader;
  }
  document.addEventListener('change', function (e) {
    var t = e.target;
    if (!t.matches || !t.matches('[data-upload] input[type=file]')) return;
    var u = of(t.closest('[data-upload]'));
    if (u) u.change();
  });
  document.addEventListener('submit', function (e) {
    var u = of(e.target.querySelector('[data-upload]'));
    if (u) u.submit(e);
  });
})();

// Live updates: the unread count in the tab title and the nav badge, and
// the list or record on the page refreshed when it changes. Pages work
// without this script.
(function () {
  'use strict';
  if (!window.EventSource || !window.fetch || !window.DOMParser) return;
  var base = document.title.replace(/^\(\d+\) /, '');
  var dirty = false;
  document.addEventListener('input', function () { dirty = true; });
  function editing() {
    var a = document.activeElement;
    return dirty || (a && /^(INPUT|TEXTAREA|SELECT)$/.test(a.tagName) && a.closest('[data-live]'));
  }
  var busy = false, again = false;
  function refresh() {
    var cur = document.querySelector('[data-live]');
    if (!cur) return;
    if (editing()) return;
    if (busy) { again = true; return; }
    busy = true;
    fetch(location.href, { credentials: 'same-origin' }).then(function (r) {
      return r.ok ? r.text() : null;
    }).then(function (html) {
      if (html && !editing()) {
        var doc = new DOMParser().parseFromString(html, 'text/html');
        var fresh = doc.querySelector('[data-live]');
        cur = document.querySelector('[data-live]');
        if (fresh && cur) cur.replaceWith(document.importNode(fresh, true));
      }
    }).catch(function () {}).then(function () {
      busy = false;
      if (again) { again = false; refresh(); }
    });
  }
  // A file still arriving: its share here grows without an event.
  setInterval(function () {
    if (document.querySelector('[data-live] .state-arriving')) refresh();
  }, 3000);
  var first = true;
  var es = new EventSource('/ui/events');
  es.addEventListener('unread', function (e) {
    var n = parseInt(e.data, 10) || 0;
    document.title = (n > 0 ? '(' + n + ') ' : '') + base;
    var badges = document.querySelectorAll('[data-unread]');
    for (var i = 0; i < badges.length; i++) {
      badges[i].textContent = String(n);
      badges[i].hidden = n === 0;
    }
    if (first) { first = false; return; }
    refresh();
  });
})();

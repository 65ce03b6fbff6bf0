package run

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	gateway "github.com/rujukan/rujukan/agency-gateway"
)

// BackupSocketName is the Unix socket, in the gateway's data folder, on
// which a running gateway makes backups of its data (rujukan backup). It
// is 0600, owned by the gateway's user: whoever can connect could read the
// data folder anyway, so the socket grants nothing new and asks for no
// token. (Between its creation and the chmod it has the process umask's
// mode; connecting needs write permission, which a umask of 022 or
// stricter gives no one else.)
const BackupSocketName = "backup.sock"

// ErrNoBackupSocket: no gateway answers on the data folder's backup
// socket (it is not running).
var ErrNoBackupSocket = errors.New("no gateway answers on the backup socket")

// backupRequest is the one request the socket knows; the answer is "ok\n"
// and the archive (gateway.WriteBackup), or "error <message>\n".
const backupRequest = "backup\n"

// backupTimeout bounds one backup, however large.
const backupTimeout = time.Hour

// backupServer serves the backup socket.
type backupServer struct {
	ln   net.Listener
	path string
	gw   *gateway.Gateway
	log  *slog.Logger
	wg   sync.WaitGroup
	mu   sync.Mutex
	open map[net.Conn]struct{}
}

// serveBackups listens on DATA/backup.sock. A socket left by a gateway
// that was killed is replaced: this process holds the database, so no
// other gateway serves this folder. When the socket cannot be made (a
// path too long for a Unix socket) the gateway runs without it and says
// so: backups are then made with the gateway stopped.
func serveBackups(gw *gateway.Gateway, data string, log *slog.Logger) *backupServer {
	path := filepath.Join(data, BackupSocketName)
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err == nil {
		if err = os.Chmod(path, 0o600); err != nil {
			ln.Close()
		}
	}
	if err != nil {
		log.Warn("no backup socket: rujukan backup works only with the gateway stopped", "err", err)
		return nil
	}
	s := &backupServer{ln: ln, path: path, gw: gw, log: log, open: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.accept()
	return s
}

func (s *backupServer) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.open[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serve(c)
			s.mu.Lock()
			delete(s.open, c)
			s.mu.Unlock()
			c.Close()
		}()
	}
}

func (s *backupServer) serve(c net.Conn) {
	c.SetDeadline(time.Now().Add(backupTimeout))
	line, err := bufio.NewReaderSize(io.LimitReader(c, 64), 64).ReadString('\n')
	if err != nil || line != backupRequest {
		fmt.Fprintf(c, "error unknown request (send %q)\n", strings.TrimSpace(backupRequest))
		return
	}
	bw := bufio.NewWriterSize(c, 1<<20)
	bw.WriteString("ok\n")
	if err := s.gw.Backup(bw); err != nil {
		// The archive stops short: the client finds it cut.
		s.log.Error("backup failed", "err", err)
		return
	}
	if err := bw.Flush(); err != nil {
		s.log.Error("backup failed", "err", err)
		return
	}
	s.log.Info("backup made")
}

// close stops the socket and every backup in progress, and removes the
// socket file.
func (s *backupServer) close() {
	if s == nil {
		return
	}
	s.ln.Close()
	s.mu.Lock()
	for c := range s.open {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// RequestBackup asks the gateway running on data folder data for a backup
// and copies the archive to w. It returns ErrNoBackupSocket when no
// gateway answers there.
func RequestBackup(ctx context.Context, data string, w io.Writer) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", filepath.Join(data, BackupSocketName))
	if err != nil {
		return fmt.Errorf("%w (%v)", ErrNoBackupSocket, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	if _, err := io.WriteString(c, backupRequest); err != nil {
		return err
	}
	br := bufio.NewReaderSize(c, 1<<20)
	line, err := br.ReadString('\n')
	if err != nil {
		return fmt.Errorf("backup: the gateway did not answer: %w", err)
	}
	if msg, ok := strings.CutPrefix(line, "error "); ok {
		return fmt.Errorf("backup: the gateway refused: %s", strings.TrimSpace(msg))
	}
	if line != "ok\n" {
		return fmt.Errorf("backup: the gateway answered %q", strings.TrimSpace(line))
	}
	_, err = io.Copy(w, br)
	return err
}

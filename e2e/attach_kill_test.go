package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// The three crash tests send one 256 MiB file from iom to the shelter and
// SIGKILL one process while the file is half way: the sending gateway, the
// receiving gateway or the broker. Each restarts; the transfer resumes
// where it was (the restarted process moves less than the whole file), the
// referral becomes delivered only once the file is whole, and the file the
// shelter serves has the uploaded hash.

const crashFile = 256 << 20

// startCrashTransfer uploads the file at iom and sends it to the shelter.
func startCrashTransfer(t *testing.T, n *network) (ref, aid string, f fileOf) {
	f = fileOf{size: crashFile, seed: 42}
	aid = upload(t, n.url("iom"), n.tokens["iom"], "application/pdf", "statement-recording.pdf", f)["id"].(string)
	ref = sendWithFiles(t, n.url("iom"), n.tokens["iom"], "shelter", aid)
	return ref, aid, f
}

// midway waits until between a quarter and three quarters of the file has
// arrived at the shelter.
func midway(t *testing.T, n *network) {
	t.Helper()
	eventually(t, "the file half way", 60*time.Second, func() (bool, string) {
		got := partSize(n, "shelter")
		return got >= crashFile/4, fmt.Sprintf("%d bytes", got)
	})
	if got := partSize(n, "shelter"); got >= crashFile*3/4 {
		t.Logf("the file was %d%% there at the kill", got*100/crashFile)
	}
}

// finished waits for delivery and checks the file at the shelter.
func finished(t *testing.T, n *network, ref, aid string, f fileOf) {
	t.Helper()
	waitStatusWithin(t, n.url("iom"), n.tokens["iom"], ref, "delivered", 120*time.Second)
	sum, size := downloadHash(t, n.url("shelter"), n.tokens["shelter"], ref, aid)
	if sum != f.sha256() || size != f.size {
		t.Fatalf("the shelter serves %d bytes with sha256 %s", size, sum)
	}
	if p := partSize(n, "shelter"); p != 0 {
		t.Fatalf("%d bytes of partial files left", p)
	}
}

func TestAttachmentSenderKilled(t *testing.T) { gatewayKilled(t, "iom", "shelter", "out") }

func TestAttachmentRecipientKilled(t *testing.T) { gatewayKilled(t, "shelter", "iom", "in") }

// gatewayKilled runs gateway victim as a process and the other in this
// one, kills the victim half way, restarts it, and checks that the
// restarted process moved (direction dir) less than the whole file.
func gatewayKilled(t *testing.T, victim, other, dir string) {
	if testing.Short() {
		t.Skip("moves 256 MiB")
	}
	n := newNetwork(t)
	n.startBroker()
	n.spawnGateway(victim)
	n.startGateway(other)
	ref, aid, f := startCrashTransfer(t, n)
	midway(t, n)
	n.kill(victim)
	before := partSize(n, "shelter")
	n.spawnGateway(victim)
	finished(t, n, ref, aid, f)
	moved := attachmentMetric(t, n, victim, dir)
	t.Logf("%d MiB had arrived at the kill; the restarted %s moved %d MiB (%s)", before>>20, victim, moved>>20, dir)
	if moved >= crashFile {
		t.Fatalf("the restarted %s moved %d bytes: it started over", victim, moved)
	}
}

func TestAttachmentBrokerKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 256 MiB")
	}
	n := newNetwork(t)
	b := n.spawnBroker()
	n.startGateway("iom")
	n.startGateway("shelter")
	ref, aid, f := startCrashTransfer(t, n)
	midway(t, n)
	b.Process.Signal(syscall.SIGKILL)
	b.Wait()
	time.Sleep(time.Second)
	n.spawnBroker()
	finished(t, n, ref, aid, f)
	out := attachmentMetric(t, n, "iom", "out")
	t.Logf("iom published %d MiB of a %d MiB file across the broker's crash", out>>20, crashFile>>20)
	if out > crashFile+crashFile/4 {
		t.Fatalf("iom published %d bytes: the transfer started over", out)
	}
}

// sampleRSS samples the resident memory of processes every 100 ms until
// ctx ends and returns the peak of each.
func sampleRSS(ctx context.Context, procs map[string]*exec.Cmd) map[string]*peak {
	peaks := map[string]*peak{}
	for id := range procs {
		peaks[id] = &peak{}
	}
	go func() {
		for ctx.Err() == nil {
			for id, c := range procs {
				peaks[id].see(rss(c.Process.Pid))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	return peaks
}

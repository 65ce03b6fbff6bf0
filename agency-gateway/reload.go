package gateway

import (
	"errors"
	"fmt"

	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/crypto"
)

// ReasonAgencyRevoked is the /readyz reason of a gateway that reloaded a
// directory revoking its own agency.
const ReasonAgencyRevoked = "agency-revoked"

// ErrAgencyRevoked is returned by Reload, New and CheckNotRevoked when the
// directory revokes this gateway's own agency.
var ErrAgencyRevoked = errors.New("this agency is revoked in the network directory")

// revokedError says plainly what a revocation of this agency means.
func revokedError(self string, dir *crypto.Directory) error {
	return fmt.Errorf("%w: agency %s is revoked in directory version %d; the broker refuses its login and every other gateway refuses its envelopes",
		ErrAgencyRevoked, self, dir.Version)
}

// Reload reads the directory file again and puts it in force when it is
// signed by the pinned authority, newer than the one in force, and still
// lists this agency, active, with the keys this gateway holds. Otherwise
// the directory in force stays and the error says why. A revoked agency
// is refused as a recipient and as a sender from then on, its envelopes
// still waiting in this agency's inbox included; what it sent before still
// verifies.
//
// A directory that revokes this gateway's own agency is not put in force,
// but its version is kept (so the gateway does not start again on an older
// file), audited, logged as an error, and /readyz answers 503
// agency-revoked from then on.
func (g *Gateway) Reload() error {
	authority, err := crypto.ParseAuthorityKey(g.cfg.Authority)
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	dir, err := crypto.LoadDirectory(g.cfg.Directory, authority)
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	cur := g.state()
	if err := crypto.CheckReplace(cur.dir, dir); err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	if self, ok := dir.Agency(g.self); ok && self.Status == crypto.StatusRevoked {
		return g.selfRevoked(cur.dir, dir)
	}
	if err := g.keysRotated(dir); err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	next, err := g.newState(dir)
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	err = g.db.Update(func(tx *store.Tx) error {
		if err := tx.SetDirectoryVersion(dir.Version); err != nil {
			return err
		}
		return tx.Audit(store.AuditEvent{Actor: g.self, Action: ActDirectoryReload, Outcome: "accepted",
			Detail: map[string]string{"version": fmt.Sprint(dir.Version), "previous": fmt.Sprint(cur.dir.Version)}})
	})
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	g.opener.SetDirectory(dir)
	g.dir.Store(next)
	g.setSenders(dir)
	g.log.Info("directory reloaded", "version", dir.Version, "previous", cur.dir.Version)
	g.logKeys(dir)
	return nil
}

// selfRevoked records a directory that revokes this gateway's own agency.
func (g *Gateway) selfRevoked(cur, dir *crypto.Directory) error {
	if g.revoked.Load() == dir.Version {
		return fmt.Errorf("reload: %w", revokedError(g.self, dir))
	}
	err := g.db.Update(func(tx *store.Tx) error {
		if err := tx.SetDirectoryVersion(dir.Version); err != nil {
			return err
		}
		return tx.Audit(store.AuditEvent{Actor: g.self, Action: ActDirectoryReload, Outcome: "refused", Reason: ReasonAgencyRevoked,
			Detail: map[string]string{"version": fmt.Sprint(dir.Version), "previous": fmt.Sprint(cur.Version)}})
	})
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	g.revoked.Store(dir.Version)
	rerr := revokedError(g.self, dir)
	g.log.Error("this agency is revoked: it can no longer send or receive; the directory in force is kept for reading what is stored",
		"version", dir.Version, "err", rerr)
	return fmt.Errorf("reload: %w", rerr)
}

// CheckNotRevoked reads the directory named by cfg and returns a plain
// error if it revokes cfg's agency (for a gateway whose login the broker
// refused), and nil otherwise, also when the directory does not load.
func CheckNotRevoked(cfg Config) error {
	authority, err := crypto.ParseAuthorityKey(cfg.Authority)
	if err != nil {
		return nil
	}
	dir, err := crypto.LoadDirectory(cfg.Directory, authority)
	if err != nil {
		return nil
	}
	if self, ok := dir.Agency(cfg.Agency); ok && self.Status == crypto.StatusRevoked {
		return revokedError(cfg.Agency, dir)
	}
	return nil
}

// keysRotated says plainly when a directory replaced the keys this running
// gateway holds: it cannot use the new ones without a restart.
func (g *Gateway) keysRotated(dir *crypto.Directory) error {
	self, ok := dir.Agency(g.self)
	if !ok {
		return nil
	}
	for use, mine := range map[crypto.KeyUse]string{crypto.UseSign: g.keys.Signer.KeyID(), crypto.UseEncrypt: g.keys.Identity.KeyID()} {
		if k, ok := self.Key(use, mine); ok && k.Status != crypto.StatusActive {
			return fmt.Errorf("directory version %d replaced this gateway's %s key %s (now %s); restart the gateway to use the new keys in %s",
				dir.Version, use, mine, k.Status, g.cfg.Keys)
		}
	}
	return nil
}

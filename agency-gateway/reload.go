package gateway

import (
	"fmt"

	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/crypto"
)

// Reload reads the directory file again and puts it in force when it is
// signed by the pinned authority, newer than the one in force, and still
// lists this agency, active, with the keys this gateway holds. Otherwise
// the directory in force stays and the error says why. A revoked agency
// is refused as a recipient and as a sender from then on; what it sent
// before still verifies.
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
	g.log.Info("directory reloaded", "version", dir.Version, "previous", cur.dir.Version)
	return nil
}

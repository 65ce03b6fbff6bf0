package policy

import (
	"errors"
	"fmt"
	"testing"
)

func TestTransition(t *testing.T) {
	R, S := ReferralMachine, StatementRequestMachine
	tests := []struct {
		name     string
		m        *Machine
		from, to string
		role     Role
		reason   string
	}{
		{"referral published", R, RefQueued, RefSent, RoleSystem, ""},
		{"referral delivered", R, RefSent, RefDelivered, RoleSystem, ""},
		{"referral read", R, RefDelivered, RefRead, RoleRecipient, ""},
		{"referral accepted", R, RefRead, RefAccepted, RoleRecipient, ""},
		{"referral declined", R, RefRead, RefDeclined, RoleRecipient, ""},
		{"referral in progress", R, RefAccepted, RefInProgress, RoleRecipient, ""},
		{"referral completed", R, RefInProgress, RefCompleted, RoleRecipient, ""},
		{"referral withdrawn before sending", R, RefQueued, RefWithdrawn, RoleSender, ""},
		{"referral withdrawn in progress", R, RefInProgress, RefWithdrawn, RoleSender, ""},
		{"referral failed undelivered", R, RefSent, RefFailed, RoleSystem, ""},
		{"referral failed while queued", R, RefQueued, RefFailed, RoleSystem, ""},
		{"sender cannot accept", R, RefRead, RefAccepted, RoleSender, ReasonTransitionRole},
		{"recipient cannot withdraw", R, RefRead, RefWithdrawn, RoleRecipient, ReasonTransitionRole},
		{"recipient cannot mark delivered", R, RefSent, RefDelivered, RoleRecipient, ReasonTransitionRole},
		{"sender cannot fail a referral", R, RefSent, RefFailed, RoleSender, ReasonTransitionRole},
		{"accept before read", R, RefDelivered, RefAccepted, RoleRecipient, ReasonTransitionIllegal},
		{"complete without progress", R, RefAccepted, RefCompleted, RoleRecipient, ReasonTransitionIllegal},
		{"reopen completed", R, RefCompleted, RefInProgress, RoleRecipient, ReasonTransitionIllegal},
		{"withdraw completed", R, RefCompleted, RefWithdrawn, RoleSender, ReasonTransitionIllegal},
		{"withdraw declined", R, RefDeclined, RefWithdrawn, RoleSender, ReasonTransitionIllegal},
		{"accept withdrawn", R, RefWithdrawn, RefAccepted, RoleRecipient, ReasonTransitionIllegal},
		{"fail after delivery", R, RefDelivered, RefFailed, RoleSystem, ReasonTransitionIllegal},
		{"deliver twice", R, RefDelivered, RefDelivered, RoleSystem, ReasonTransitionIllegal},
		{"back to queued", R, RefSent, RefQueued, RoleSystem, ReasonTransitionIllegal},
		{"unknown target", R, RefRead, "archived", RoleRecipient, ReasonStateUnknown},
		{"unknown source", R, "", RefRead, RoleRecipient, ReasonStateUnknown},
		{"statement state in referral", R, RefRead, SRConsentGiven, RoleRecipient, ReasonStateUnknown},
		{"unknown role", R, RefRead, RefAccepted, Role("admin"), ReasonTransitionRole},
		{"request delivered", S, SRSent, SRDelivered, RoleSystem, ""},
		{"request read", S, SRDelivered, SRRead, RoleRecipient, ""},
		{"consent given", S, SRRead, SRConsentGiven, RoleRecipient, ""},
		{"consent refused", S, SRRead, SRConsentRefused, RoleRecipient, ""},
		{"consent given after refusal", S, SRConsentRefused, SRConsentGiven, RoleRecipient, ""},
		{"consent withdrawn", S, SRConsentGiven, SRConsentRefused, RoleRecipient, ""},
		{"answered", S, SRConsentGiven, SRAnswered, RoleRecipient, ""},
		{"declined after consent", S, SRConsentGiven, SRDeclined, RoleRecipient, ""},
		{"declined after refusal", S, SRConsentRefused, SRDeclined, RoleRecipient, ""},
		{"declined after reading", S, SRRead, SRDeclined, RoleRecipient, ""},
		{"expired", S, SRConsentGiven, SRExpired, RoleSystem, ""},
		{"answer without consent", S, SRRead, SRAnswered, RoleRecipient, ReasonTransitionIllegal},
		{"answer after refusal", S, SRConsentRefused, SRAnswered, RoleRecipient, ReasonTransitionIllegal},
		{"police record consent", S, SRRead, SRConsentGiven, RoleSender, ReasonTransitionRole},
		{"police answer", S, SRConsentGiven, SRAnswered, RoleSender, ReasonTransitionRole},
		{"recipient expires", S, SRRead, SRExpired, RoleRecipient, ReasonTransitionRole},
		{"answer after expiry", S, SRExpired, SRAnswered, RoleRecipient, ReasonTransitionIllegal},
		{"expire answered", S, SRAnswered, SRExpired, RoleSystem, ReasonTransitionIllegal},
		{"referral state in request", S, SRRead, RefAccepted, RoleRecipient, ReasonStateUnknown},
		{"nil machine", nil, RefRead, RefAccepted, RoleRecipient, ReasonStateUnknown},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Transition(tc.m, tc.from, tc.to, tc.role)
			wantReason(t, err, tc.reason)
			if tc.reason == ReasonTransitionIllegal || tc.reason == ReasonTransitionRole {
				if !errors.Is(err, ErrConflict) {
					t.Errorf("%v is not ErrConflict", err)
				}
			}
		})
	}
}

// Every edge of every machine is allowed for its role and refused for the
// other roles; every other pair of states is illegal.
func TestTransitionExhaustive(t *testing.T) {
	roles := []Role{RoleSender, RoleRecipient, RoleSystem}
	for _, m := range []*Machine{ReferralMachine, StatementRequestMachine} {
		edges := map[[2]string]Role{}
		for _, e := range m.Edges {
			if !m.Valid(e.From) || !m.Valid(e.To) {
				t.Fatalf("%s: edge %v names an unknown state", m.Name, e)
			}
			if _, dup := edges[[2]string{e.From, e.To}]; dup {
				t.Fatalf("%s: edge %v listed twice", m.Name, e)
			}
			edges[[2]string{e.From, e.To}] = e.By
		}
		for _, from := range m.States {
			for _, to := range m.States {
				for _, role := range roles {
					t.Run(fmt.Sprintf("%s/%s->%s/%s", m.Name, from, to, role), func(t *testing.T) {
						by, ok := edges[[2]string{from, to}]
						err := Transition(m, from, to, role)
						switch {
						case !ok:
							wantReason(t, err, ReasonTransitionIllegal)
						case by == role:
							wantReason(t, err, "")
						default:
							wantReason(t, err, ReasonTransitionRole)
						}
					})
				}
			}
		}
	}
}

func TestMachineShape(t *testing.T) {
	terminal := map[string][]string{
		"referral":          {RefDeclined, RefCompleted, RefWithdrawn, RefFailed},
		"statement-request": {SRAnswered, SRDeclined, SRExpired},
	}
	for _, m := range []*Machine{ReferralMachine, StatementRequestMachine} {
		var got []string
		for _, s := range m.States {
			if m.Terminal(s) {
				got = append(got, s)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(terminal[m.Name]) {
			t.Errorf("%s terminal states = %v, want %v", m.Name, got, terminal[m.Name])
		}
		if !m.Valid(m.Initial) {
			t.Errorf("%s initial state %q unknown", m.Name, m.Initial)
		}
	}
	if got := fmt.Sprint(ReferralMachine.Next(RefRead, RoleRecipient)); got != "[accepted declined]" {
		t.Errorf("Next(read, recipient) = %s", got)
	}
}

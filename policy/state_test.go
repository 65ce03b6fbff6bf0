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
		{"referral declined from the list, unread", R, RefDelivered, RefDeclined, RoleRecipient, ""},
		{"sender cannot decline a delivered referral", R, RefDelivered, RefDeclined, RoleSender, ReasonTransitionRole},
		{"system cannot decline a delivered referral", R, RefDelivered, RefDeclined, RoleSystem, ReasonTransitionRole},
		{"decline before delivery", R, RefSent, RefDeclined, RoleRecipient, ReasonTransitionIllegal},
		{"decline after acceptance", R, RefAccepted, RefDeclined, RoleRecipient, ReasonTransitionIllegal},
		{"decline in progress", R, RefInProgress, RefDeclined, RoleRecipient, ReasonTransitionIllegal},
		{"decline withdrawn", R, RefWithdrawn, RefDeclined, RoleRecipient, ReasonTransitionIllegal},
		{"complete withdrawn", R, RefWithdrawn, RefCompleted, RoleRecipient, ReasonTransitionIllegal},
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
		{"request published", S, SRQueued, SRSent, RoleSystem, ""},
		{"queued request expired", S, SRQueued, SRExpired, RoleSystem, ""},
		{"sent request refused by its recipient", S, SRSent, SRFailed, RoleSystem, ""},
		{"delivered request cannot fail", S, SRDelivered, SRFailed, RoleSystem, ReasonTransitionIllegal},
		{"recipient cannot publish", S, SRQueued, SRSent, RoleRecipient, ReasonTransitionRole},
		{"sender cannot publish by hand", S, SRQueued, SRSent, RoleSender, ReasonTransitionRole},
		{"queued straight to delivered", S, SRQueued, SRDelivered, RoleSystem, ReasonTransitionIllegal},
		{"decline a queued request", S, SRQueued, SRDeclined, RoleRecipient, ReasonTransitionIllegal},
		{"back to queued", S, SRSent, SRQueued, RoleSystem, ReasonTransitionIllegal},
		{"declined from the list, unread", S, SRDelivered, SRDeclined, RoleRecipient, ""},
		{"police cannot decline for the holder", S, SRDelivered, SRDeclined, RoleSender, ReasonTransitionRole},
		{"decline before delivery", S, SRSent, SRDeclined, RoleRecipient, ReasonTransitionIllegal},
		{"decline answered", S, SRAnswered, SRDeclined, RoleRecipient, ReasonTransitionIllegal},
		{"decline expired", S, SRExpired, SRDeclined, RoleRecipient, ReasonTransitionIllegal},
		{"consent before reading", S, SRDelivered, SRConsentGiven, RoleRecipient, ReasonTransitionIllegal},
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
		"statement-request": {SRAnswered, SRDeclined, SRExpired, SRFailed},
	}
	if StatementRequestMachine.Initial != SRQueued || ReferralMachine.Initial != RefQueued {
		t.Errorf("initial states %q and %q, want queued", ReferralMachine.Initial, StatementRequestMachine.Initial)
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
	if got := fmt.Sprint(ReferralMachine.Next(RefDelivered, RoleRecipient)); got != "[read declined]" {
		t.Errorf("Next(delivered, recipient) = %s", got)
	}
	// Declining a statement request is always open to the holder until it
	// is answered or expires.
	for _, from := range []string{SRDelivered, SRRead, SRConsentGiven, SRConsentRefused} {
		if err := Transition(StatementRequestMachine, from, SRDeclined, RoleRecipient); err != nil {
			t.Errorf("decline from %s: %v", from, err)
		}
	}
	// Every final state is in the precedence, and only final states are.
	for _, m := range []*Machine{ReferralMachine, StatementRequestMachine} {
		for _, s := range m.Precedence {
			if !m.Terminal(s) {
				t.Errorf("%s: precedence names %q, which is not final", m.Name, s)
			}
		}
	}
}

// wantEdges is every edge of both machines, written out: a change to either
// machine must change this table too.
var wantEdges = map[string][]Edge{
	"referral": {
		{RefQueued, RefSent, RoleSystem},
		{RefQueued, RefFailed, RoleSystem},
		{RefQueued, RefWithdrawn, RoleSender},
		{RefSent, RefDelivered, RoleSystem},
		{RefSent, RefFailed, RoleSystem},
		{RefSent, RefWithdrawn, RoleSender},
		{RefDelivered, RefRead, RoleRecipient},
		{RefDelivered, RefDeclined, RoleRecipient},
		{RefDelivered, RefWithdrawn, RoleSender},
		{RefRead, RefAccepted, RoleRecipient},
		{RefRead, RefDeclined, RoleRecipient},
		{RefRead, RefWithdrawn, RoleSender},
		{RefAccepted, RefInProgress, RoleRecipient},
		{RefAccepted, RefWithdrawn, RoleSender},
		{RefInProgress, RefCompleted, RoleRecipient},
		{RefInProgress, RefWithdrawn, RoleSender},
	},
	"statement-request": {
		{SRQueued, SRSent, RoleSystem},
		{SRQueued, SRExpired, RoleSystem},
		{SRQueued, SRFailed, RoleSystem},
		{SRSent, SRFailed, RoleSystem},
		{SRSent, SRDelivered, RoleSystem},
		{SRSent, SRExpired, RoleSystem},
		{SRDelivered, SRRead, RoleRecipient},
		{SRDelivered, SRDeclined, RoleRecipient},
		{SRDelivered, SRExpired, RoleSystem},
		{SRRead, SRConsentGiven, RoleRecipient},
		{SRRead, SRConsentRefused, RoleRecipient},
		{SRRead, SRDeclined, RoleRecipient},
		{SRRead, SRExpired, RoleSystem},
		{SRConsentGiven, SRConsentRefused, RoleRecipient},
		{SRConsentGiven, SRAnswered, RoleRecipient},
		{SRConsentGiven, SRDeclined, RoleRecipient},
		{SRConsentGiven, SRExpired, RoleSystem},
		{SRConsentRefused, SRConsentGiven, RoleRecipient},
		{SRConsentRefused, SRDeclined, RoleRecipient},
		{SRConsentRefused, SRExpired, RoleSystem},
	},
}

// Each listed edge is allowed for its role, and the machines have no other
// edge (TestTransitionExhaustive then refuses every other pair and role).
func TestMachineEdges(t *testing.T) {
	for _, m := range []*Machine{ReferralMachine, StatementRequestMachine} {
		want := wantEdges[m.Name]
		for _, e := range want {
			t.Run(fmt.Sprintf("%s/%s->%s/%s", m.Name, e.From, e.To, e.By), func(t *testing.T) {
				wantReason(t, Transition(m, e.From, e.To, e.By), "")
			})
		}
		for _, e := range m.Edges {
			found := false
			for _, w := range want {
				found = found || w == e
			}
			if !found {
				t.Errorf("%s has edge %v that the table does not list", m.Name, e)
			}
		}
		if len(m.Edges) != len(want) {
			t.Errorf("%s has %d edges, want %d", m.Name, len(m.Edges), len(want))
		}
	}
}

func TestSupersedes(t *testing.T) {
	R, S := ReferralMachine, StatementRequestMachine
	tests := []struct {
		name string
		m    *Machine
		a, b string
		want bool
	}{
		{"withdraw beats a decline sent at once", R, RefWithdrawn, RefDeclined, true},
		{"decline loses to a withdrawal", R, RefDeclined, RefWithdrawn, false},
		{"completion beats a withdrawal", R, RefCompleted, RefWithdrawn, true},
		{"withdrawal loses to a completion", R, RefWithdrawn, RefCompleted, false},
		{"completion beats a decline", R, RefCompleted, RefDeclined, true},
		{"decline loses to a completion", R, RefDeclined, RefCompleted, false},
		{"decline beats failed", R, RefDeclined, RefFailed, true},
		{"withdrawal beats acceptance", R, RefWithdrawn, RefAccepted, true},
		{"acceptance loses to a withdrawal", R, RefAccepted, RefWithdrawn, false},
		{"failed beats nothing final", R, RefFailed, RefDeclined, false},
		{"failed does not beat an open state", R, RefFailed, RefSent, false},
		{"two open states", R, RefAccepted, RefInProgress, false},
		{"a state does not beat itself", R, RefWithdrawn, RefWithdrawn, false},
		{"unknown state beats nothing", R, "archived", RefRead, false},
		{"final state beats an unknown one", R, RefDeclined, "archived", true},
		{"answer beats a decline", S, SRAnswered, SRDeclined, true},
		{"answer beats expiry", S, SRAnswered, SRExpired, true},
		{"decline beats expiry", S, SRDeclined, SRExpired, true},
		{"expiry loses to an answer", S, SRExpired, SRAnswered, false},
		{"expiry loses to a decline", S, SRExpired, SRDeclined, false},
		{"decline loses to an answer", S, SRDeclined, SRAnswered, false},
		{"expiry beats consent given", S, SRExpired, SRConsentGiven, true},
		{"nil machine", nil, RefCompleted, RefWithdrawn, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.m.Supersedes(tc.a, tc.b); got != tc.want {
				t.Fatalf("Supersedes(%s, %s) = %v, want %v", tc.a, tc.b, got, tc.want)
			}
		})
	}
}

// Every pair of states of both machines, against the documented ranks:
// exactly one of two different ranked states wins, a ranked state beats
// every unranked one, and unranked states beat nothing.
func TestSupersedesEveryPair(t *testing.T) {
	rank := map[string]map[string]int{
		"referral":          {RefCompleted: 1, RefWithdrawn: 2, RefDeclined: 3},
		"statement-request": {SRAnswered: 1, SRDeclined: 2, SRExpired: 3},
	}
	for _, m := range []*Machine{ReferralMachine, StatementRequestMachine} {
		r := rank[m.Name]
		for _, a := range m.States {
			for _, b := range m.States {
				ra, rb := r[a], r[b]
				want := ra != 0 && (rb == 0 || ra < rb)
				if got := m.Supersedes(a, b); got != want {
					t.Errorf("%s: Supersedes(%s, %s) = %v, want %v", m.Name, a, b, got, want)
				}
				if a != b && ra != 0 && rb != 0 && m.Supersedes(a, b) == m.Supersedes(b, a) {
					t.Errorf("%s: %s and %s do not settle to one state", m.Name, a, b)
				}
			}
		}
	}
}

// Both gateways settle concurrent final changes to the same state: each
// applies its own change, then the other's by the rule in the Machine doc.
func TestConcurrentSettle(t *testing.T) {
	settle := func(m *Machine, current, incoming string, by Role) string {
		if Transition(m, current, incoming, by) == nil || m.Supersedes(incoming, current) {
			return incoming
		}
		return current
	}
	tests := []struct {
		name              string
		m                 *Machine
		from              string
		senderTo, recipTo string
		want              string
	}{
		{"decline and withdraw", ReferralMachine, RefRead, RefWithdrawn, RefDeclined, RefWithdrawn},
		{"decline unread and withdraw", ReferralMachine, RefDelivered, RefWithdrawn, RefDeclined, RefWithdrawn},
		{"complete and withdraw", ReferralMachine, RefInProgress, RefWithdrawn, RefCompleted, RefCompleted},
		{"accept and withdraw", ReferralMachine, RefRead, RefWithdrawn, RefAccepted, RefWithdrawn},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sender := settle(tc.m, tc.senderTo, tc.recipTo, RoleRecipient)
			recip := settle(tc.m, tc.recipTo, tc.senderTo, RoleSender)
			if sender != tc.want || recip != tc.want {
				t.Fatalf("sender ends %s, recipient ends %s, want %s", sender, recip, tc.want)
			}
		})
	}
}

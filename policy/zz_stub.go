package policy

// TEMPORARY: replaced by the real definitions on merge.

const SRQueued = "queued"

func (m *Machine) Supersedes(a, b string) bool {
	var prec []string
	switch m.Name {
	case "referral":
		prec = []string{RefCompleted, RefWithdrawn, RefDeclined}
	default:
		prec = []string{SRAnswered, SRDeclined, SRExpired}
	}
	ia, ib := -1, -1
	for i, s := range prec {
		if s == a {
			ia = i
		}
		if s == b {
			ib = i
		}
	}
	return ia >= 0 && (ib < 0 || ia < ib)
}

func (r *Rules) CheckPseudonym(s string) error { return nil }

const SRFailed = "failed"

func init() {
	m := StatementRequestMachine
	m.Initial = SRQueued
	m.States = append(m.States, SRQueued, SRFailed)
	m.Edges = append(m.Edges,
		Edge{SRQueued, SRSent, RoleSystem}, Edge{SRQueued, SRExpired, RoleSystem},
		Edge{SRQueued, SRFailed, RoleSystem}, Edge{SRSent, SRFailed, RoleSystem},
		Edge{SRDelivered, SRDeclined, RoleRecipient})
	ReferralMachine.Edges = append(ReferralMachine.Edges, Edge{RefDelivered, RefDeclined, RoleRecipient})
}

package gateway

import (
	"time"

	"github.com/rujukan/rujukan/agency-gateway/body"

	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/crypto"
	"github.com/rujukan/rujukan/policy"
)

// A Kind is one kind of message: what staff send (Prepare: parse,
// validate, the checks before sending) and what receiving it does (Check
// before the store transaction, Apply inside it). Each kind lives in a
// file of its own and is listed once in registry; Send and Receive never
// name a kind.
//
// Security: Prepare, Check and Apply see hostile input (a caller's body, a
// peer's envelope) and must refuse what the rules do not allow; Send and
// Receive only authorize the action, seal, open, store and settle.
type Kind interface {
	// Name is the key Send and Receive look the kind up by: the envelope
	// kind for kinds that arrive, or the name of a staff action.
	Name() string
	// Prepare checks what a member of staff sends and says what to seal
	// and what it changes here. It runs before the store transaction.
	Prepare(g *Gateway, d Draft) (*Outgoing, error)
	// Check parses and checks an incoming, verified envelope before the
	// store transaction (network rules, body, rules of the kind).
	Check(g *Gateway, in *Incoming) error
	// Apply stores what the envelope changes, in the store transaction. It
	// may run twice (store.DB.Batch), so it has no effect outside tx.
	Apply(g *Gateway, tx *store.Tx, in *Incoming) error
}

// Kind names.
const (
	kindReferral         = crypto.KindReferral
	kindStatus           = crypto.KindStatus
	kindReceipt          = crypto.KindReceipt
	kindStatementRequest = crypto.KindStatementRequest
	kindStatement        = crypto.KindStatement
	kindConsent          = "consent"
	kindCheckpoint       = crypto.KindCheckpoint
	kindCosignature      = crypto.KindCosignature
)

// registry lists every kind: adding one is its file and one line here.
func registry() map[string]Kind {
	m := map[string]Kind{}
	for _, k := range []Kind{
		referralKind{},
		statusKind{},
		receiptKind{},
		statementRequestKind{},
		consentKind{},
		statementKind{},
		checkpointKind{},
		cosignatureKind{},
	} {
		m[k.Name()] = k
	}
	return m
}

// Draft is what a member of staff asks to send.
type Draft struct {
	// Kind names the Kind that prepares it.
	Kind string
	// Action is the policy action it needs the scope of.
	Action policy.Action
	// Ref is the record it acts on ("" for a new referral or request).
	Ref  string
	Body []byte

	// Filled in by Send.
	Principal policy.Principal
	Record    *store.Record
	Now       time.Time
}

// Outgoing is what Prepare makes of a draft.
type Outgoing struct {
	// Kind is the envelope kind to seal ("" when nothing is sent, such as
	// a referral withdrawn before it left).
	Kind string
	// To is the recipient agency; Body the plaintext to seal.
	To   *crypto.Agency
	Body []byte
	// New is a record this creates; its id is the envelope's.
	New *store.Record
	// Ref and Change: the state change of an existing record.
	Ref    string
	Change *Change
	// Store, when set, writes what the kind keeps besides (sealed copies)
	// in the transaction, before the change is applied.
	Store func(tx *store.Tx, rec *store.Record) error
	// After, when set, runs once the transaction has ended.
	After func()
	// ID is the envelope id (made by Send when empty).
	ID string
	// Files are the files sent with it (attachFiles): they follow the
	// envelope once it is published.
	Files []body.Attachment
	// Thread, when set, seals the envelope with the key of the thread it
	// belongs to instead of the recipient's hybrid key (receipts and
	// status envelopes); NewThread is the key a new record's first
	// message carries, kept with the record.
	Thread, NewThread *crypto.ThreadKey
}

// Incoming is an envelope being received.
type Incoming struct {
	Header crypto.Header
	Env    []byte
	// Hash is the hex SHA-256 of Env.
	Hash string
	// Body is the verified plaintext.
	Body []byte
	// Sender is the verified sender's directory entry.
	Sender *crypto.Agency
	// Now is the receiving gateway's time.
	Now time.Time
	// Value is what Check parsed, for Apply.
	Value any
	// Receipt, when set by Check, is queued with the envelope in Apply's
	// transaction.
	Receipt *sealed
	// outcome is the delivery outcome Apply decided for a sent record.
	outcome, outcomeRef string
	// Files are the files the body lists (set by Check with
	// receivedFiles): their transfers are recorded with the envelope, and
	// its delivered receipt waits for them. record is the record they
	// belong to (default: the envelope's id).
	Files  []body.Attachment
	record string
	// thread is the thread key the body carries (set by Check), kept with
	// the record Apply creates.
	thread *crypto.ThreadKey
}

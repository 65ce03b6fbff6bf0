// Package crypto holds everything Rujukan trusts: sealed envelopes,
// signed receipts, agency key files and the signed network directory. It is
// pure: bytes and structs in, bytes and decisions out; it touches the disk
// only to read and write key files and directories.
//
// # What is signed and encrypted, in what order
//
// Seal signs, then encrypts, then signs again:
//
//  1. The inner object is the header (version, id, kind, from, to, sender
//     key id, recipient key id, created, expires), the body, and the
//     sender's Ed25519 signature over
//     "rujukan/v1/envelope/inner\x00" || header || SHA-256(body).
//  2. The inner object is encrypted with age to the recipient's post-quantum
//     hybrid recipient (ML-KEM-768 + X25519). Only hybrid recipients are
//     accepted anywhere in this package.
//  3. The envelope is the same header in clear, the age ciphertext, and the
//     sender's signature over
//     "rujukan/v1/envelope/outer\x00" || header || SHA-256(ciphertext).
//
// The exact bytes are specified in docs/PROTOCOL.md, with golden vectors in
// testdata/vectors.
//
// # Guarantees
//
// Open returns a body only if: the envelope is at most MaxEnvelopeSize; the
// outer signature verifies with the sender's key from the directory, active
// or retired by a rotation until its not_after (never revoked), and the
// sender agency is active; the envelope is addressed to the opener's agency
// and to one of its keys that the opener holds, active or retired until its
// not_after; now is within created/expires (widened by the clock skew); the whole
// ciphertext decrypts and authenticates; the inner signature verifies; and
// the inner header is byte for byte the outer one. The last check defeats
// signature stripping (another agency re-signing the outer envelope) and
// surreptitious forwarding (a recipient re-sealing a signed inner object to a
// third agency). Every failure wraps one sentinel error, which ReasonCode
// turns into a receipt reason code; OuterVerified tells whether the sender
// is known.
//
// A Signer signs only the domain-separated inputs of this package, so an
// agency cannot be made to sign arbitrary bytes through it.
//
// The directory is signed by the network authority and verified against its
// pinned public key before anything in it is parsed. Revoked agencies and
// keys stay listed, so what they signed before stays verifiable
// (VerifyOuter, VerifyReceipt, Opener.OpenStored) while nothing new from
// them is accepted (Opener.Open) or sealed to them (Seal).
//
// # Caveats
//
//   - Open does not detect replays: the caller must refuse an envelope id it
//     has already stored. The created/expires window bounds how long it must
//     remember ids.
//   - The outer header (agency ids, kind, key ids, times, sizes) is visible
//     to the broker and to anyone on the wire; only the body is secret.
//   - Times travel as Unix milliseconds; Open returns them in UTC.
//   - Private key files must be mode 0600 (or stricter); the loaders refuse
//     anything readable by group or others.
//   - The NATS key of a directory entry is checked for shape only (56
//     characters of base32 starting with "U"): this package does not depend
//     on the NATS libraries. The broker parses every NATS key
//     (broker.CheckDirectory) and refuses a directory with one that does
//     not parse; NATS key pairs are made by broker.NewNATSKey.
package crypto

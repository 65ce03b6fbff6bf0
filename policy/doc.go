// Package policy decides who may do what in a Rujukan gateway: it verifies
// bearer tokens (JWT), checks the scopes of every API action, applies the
// network rules of the signed directory to every envelope, checks consent and
// purpose limitation, and holds the referral and statement-request state
// machines as data.
//
// The package is pure. It does no file or network I/O: tokens, parsed key
// sets, rules and facts go in, and decisions with stable reason codes come
// out. Time comes in as an argument or, for the verifier, as a clock
// function (time.Now unless one is given); MintToken draws a random token id
// when none is given. That makes
// every decision table-testable and the same on the sending and the receiving
// gateway.
//
// # Guarantees
//
//   - Tokens (RFC 8725): an explicit algorithm allowlist (EdDSA by default,
//     ES256 and RS256 by configuration), one algorithm per key, keys only from
//     the JWKS of a configured trusted issuer selected by kid (never from jku,
//     x5u, x5c or jwk headers), the audience must contain this gateway's
//     agency id, exp is required, nbf and iat are checked with at most 30 s of
//     leeway, typ is JWT or at+jwt when present, and a token over
//     [MaxTokenSize] is refused before any parsing. Once the signature
//     verifies, the header and claims are read again strictly: one JSON
//     object each, no member name twice at any depth (ignoring case, as
//     encoding/json matches names), exp, iat and nbf JSON numbers (never
//     strings). sub is 1 to [MaxSubject] bytes of printable
//     UTF-8 (no control or format character: no newline, no U+202E), and
//     jti likewise, so neither can forge or disguise an audit log line.
//   - Scopes follow the agency kind: a gateway configured with its kind
//     ([VerifierConfig].Kind) refuses a token holding a scope outside
//     [ScopesForKind]; the police never hold consent:override
//     ([MayOverride]), and a receiving gateway that judges a peer by the
//     scopes of its kind refuses a police override.
//   - Authorization: every API action needs a named scope ([Decide]).
//   - Network rules: anything not listed in the directory's rules is denied
//     ([Rules.Allow]); statements only answer an open request, status and
//     receipts only go to the counterpart of an existing exchange, whatever
//     the rules say.
//   - Consent: a referral needs consent covering its purpose, a minor (or a
//     person of unknown age) needs a guardian or a social-worker witness, and
//     the only way around missing consent is an audited override
//     ([CheckReferralConsent]).
//   - Pseudonyms: a person is named by a pseudonym of the form the network
//     rules set ([Rules.CheckPseudonym], [DefaultPseudonymPattern]), and a
//     refusal never repeats the value, which may be a real name.
//   - State machines: each transition names who may make it ([Transition]),
//     and changes made by both parties at once settle the same way on both
//     gateways ([Machine.Supersedes]).
//
// # Errors
//
// Every refusal is an [*Error] carrying a reason code (the Reason* constants).
// Its class is reachable with errors.Is: [ErrInvalidToken] (HTTP 401),
// [ErrInsufficientScope] (403, RFC 6750 insufficient_scope), [ErrDenied]
// (403), [ErrConflict] (409) and [ErrInvalidInput] (422). Reason codes are
// stable: they go into audit events, problem types and rejected receipts.
package policy

package crypto_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log"
	"time"

	"github.com/rujukan/rujukan/crypto"
)

// natsKeys are NATS user public keys of the example agencies. The broker
// makes and parses nkeys (broker.NewNATSKey); this package only lists them.
var natsKeys = map[string]string{
	"iom":     "UDWPZRWTPPXX47KFEOGVYFPF74X7IQY5HFNKOXP6Y47LK3ZWZQYYSUEV",
	"shelter": "UALOATOS44CNJXPCMXDTCYFCFC6MYOKG2HFY7YRYZMRDC2JDMRE3FDJT",
}

// member makes the keys of one agency and its directory entry. In a real
// network they come from GenerateAgencyKeys and the signed directory.
func member(id, kind string) (*crypto.Identity, *crypto.Signer, crypto.Agency) {
	identity, err := crypto.GenerateIdentity()
	if err != nil {
		log.Fatal(err)
	}
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := crypto.NewSigner(key)
	return identity, signer, crypto.Agency{
		ID: id, Kind: kind, Name: id, Status: crypto.StatusActive,
		Keys: []crypto.PublicKey{
			crypto.NewPublicKey(crypto.UseEncrypt, identity.Recipient()),
			crypto.NewPublicKey(crypto.UseSign, base64.StdEncoding.EncodeToString(signer.PublicKey())),
			crypto.NewPublicKey(crypto.UseNATS, natsKeys[id]),
		},
	}
}

// network returns a directory with iom and shelter, signed by a fresh
// authority and verified, as a gateway loads it.
func network() (*crypto.Directory, *crypto.Signer, *crypto.Identity) {
	_, iomSigner, iom := member("iom", "iom")
	shelterID, _, shelter := member("shelter", "shelter")
	d := crypto.NewDirectory("example", nil)
	d.Add(iom)
	d.Add(shelter)
	authPub, authKey, _ := ed25519.GenerateKey(rand.Reader)
	signed, err := crypto.SignDirectory(d, authKey)
	if err != nil {
		log.Fatal(err)
	}
	dir, err := crypto.ParseDirectory(signed, authPub)
	if err != nil {
		log.Fatal(err)
	}
	return dir, iomSigner, shelterID
}

func ExampleSeal() {
	dir, iomSigner, _ := network()
	shelter, _ := dir.Agency("shelter")

	now := time.Now()
	env, err := crypto.Seal(crypto.Header{
		ID:      crypto.NewID(),
		Kind:    crypto.KindReferral,
		From:    "iom",
		Created: now,
		Expires: now.Add(72 * time.Hour),
	}, []byte(`{"person":{"pseudonym":"V-2026-0042"}}`), iomSigner, shelter)
	if err != nil {
		log.Fatal(err)
	}

	// The broker and auditors can check who sent it without decrypting.
	h, err := crypto.VerifyOuter(env, dir)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(h.Kind, h.From, "->", h.To)
	// Output: referral iom -> shelter
}

func ExampleOpener_Open() {
	dir, iomSigner, shelterIdentity := network()
	shelter, _ := dir.Agency("shelter")
	now := time.Now()
	env, err := crypto.Seal(crypto.Header{ID: crypto.NewID(), Kind: crypto.KindReferral, From: "iom",
		Created: now, Expires: now.Add(time.Hour)}, []byte("hello"), iomSigner, shelter)
	if err != nil {
		log.Fatal(err)
	}

	opener, err := crypto.NewOpener("shelter", dir, shelterIdentity)
	if err != nil {
		log.Fatal(err)
	}
	h, body, err := opener.Open(env, time.Now())
	if err != nil {
		// Branch on the sentinel; answer a verified sender with a signed
		// rejected receipt carrying the reason code.
		fmt.Println("rejected:", crypto.ReasonCode(err), "verified sender:", crypto.OuterVerified(err))
		return
	}
	fmt.Printf("%s from %s: %s\n", h.Kind, h.From, body)

	// Delivered after it expired, it is refused.
	_, _, err = opener.Open(env, now.Add(90*time.Minute))
	fmt.Println("rejected:", crypto.ReasonCode(err), "verified sender:", crypto.OuterVerified(err))
	// Output:
	// referral from iom: hello
	// rejected: expired verified sender: true
}

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// words are what the scenario reads on the pages, per language.
var words = map[string]map[string]string{
	"en": {"accepted": "Accepted", "html": "en", "inbox": "Inbox"},
	"id": {"accepted": "Diterima", "html": "id", "inbox": "Kotak masuk"},
}

// TestWebBrowser drives the web app in a real browser over the dev
// network: a referral from IOM to the shelter (seen live at the shelter,
// opened and accepted, the ticks and outcome seen at IOM), and a
// statement request from the police answered by the shelter, in English
// and in Bahasa Indonesia, with screenshots at phone and desktop sizes.
func TestWebBrowser(t *testing.T) {
	bin := chromium(t)
	wn := mustWebNet(t)
	users := []struct{ name, agency, user string }{
		{"iomCW", "iom", "caseworker"}, {"shelterCW", "shelter", "caseworker"}, {"policeInv", "police", "investigator"},
		{"shelterCR", "shelter", "consent-recorder"}, {"iomOp", "iom", "operator"},
	}
	b := map[string]context.Context{}
	for _, u := range users {
		ctx := newBrowser(t, bin)
		base := wn.urls[u.agency]
		brun(t, ctx, "sign in "+u.name,
			chromedp.Navigate(base+"/ui/login?lang=en"),
			chromedp.WaitVisible(chromedp.CSS("#name")),
			chromedp.SendKeys(chromedp.CSS("#name"), u.user),
			chromedp.SendKeys(chromedp.CSS("#password"), wn.passwords[u.agency][u.user]),
			chromedp.Submit(chromedp.CSS("#name")),
			chromedp.WaitVisible(chromedp.CSS("nav.main")))
		b[u.name] = ctx
	}
	for _, lang := range []string{"en", "id"} {
		t.Run(lang, func(t *testing.T) { webScenario(t, wn, b, lang) })
	}
}

func poll(expr string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(15*time.Second))
}

func webScenario(t *testing.T, wn *webNet, b map[string]context.Context, lang string) {
	w := words[lang]
	iom, shelter, police := wn.urls["iom"], wn.urls["shelter"], wn.urls["police"]
	q := "?lang=" + lang

	// The shelter's caseworker keeps the inbox open.
	brun(t, b["shelterCW"], "shelter inbox",
		chromedp.Navigate(shelter+"/ui/referrals"+q+"&box=inbox"),
		chromedp.WaitVisible(chromedp.CSS("nav.main")),
		poll(`document.documentElement.lang === "`+w["html"]+`"`))
	title := value(t, b["shelterCW"], "title", chromedp.Title())
	if strings.HasPrefix(title, "(") {
		t.Fatalf("unread before sending: %q", title)
	}

	// IOM sends a referral through the form.
	brun(t, b["iomCW"], "referral form",
		chromedp.Navigate(iom+"/ui/referrals/new"+q),
		chromedp.WaitVisible(chromedp.CSS("#to")))
	checkLabels(t, b["iomCW"], "referral form")
	shoot(t, b["iomCW"], "referral-form-"+lang)
	brun(t, b["iomCW"], "fill and send",
		chromedp.SendKeys(chromedp.CSS("#to"), "shelter"),
		chromedp.SendKeys(chromedp.CSS("#pseudonym"), "V-2026-0042"),
		chromedp.SetValue(chromedp.CSS("#sex"), "female"),
		chromedp.SendKeys(chromedp.CSS("#age"), "25"),
		chromedp.SendKeys(chromedp.CSS("#nationality"), "ID"),
		chromedp.Click(chromedp.CSS(`input[name=exploitation][value=labour]`)),
		chromedp.Click(chromedp.CSS(`input[name=needs][value=shelter]`)),
		chromedp.Click(chromedp.CSS(`input[name=needs][value=psychosocial]`)),
		chromedp.SetValue(chromedp.CSS("#risk"), "high"),
		chromedp.Click(chromedp.CSS(`input[name=consent][value=given]`)),
		chromedp.Click(chromedp.CSS(`input[name=purposes][value=services]`)),
		chromedp.SetValue(chromedp.CSS("#method"), "written"),
		chromedp.SendKeys(chromedp.CSS("#notes"), "<script>alert(1)</script> needs a bed tonight"),
		chromedp.Submit(chromedp.CSS("#to")),
		chromedp.WaitVisible(chromedp.CSS(".state-line")))

	// The shelter sees it arrive without reloading.
	brun(t, b["shelterCW"], "live arrival",
		chromedp.WaitVisible(chromedp.CSS("li.item.unread")),
		poll(`document.title.startsWith("(1) Rujukan")`))
	checkLabels(t, b["shelterCW"], "inbox")
	shoot(t, b["shelterCW"], "inbox-"+lang)
	brun(t, b["shelterCW"], "open",
		chromedp.Click(chromedp.CSS("li.item.unread a")),
		chromedp.WaitVisible(chromedp.CSS("button.act-accepted")))
	note := value(t, b["shelterCW"], "note", chromedp.Text(chromedp.CSS("p.note")))
	if !strings.Contains(note, "<script>alert(1)</script>") {
		t.Errorf("note not shown as text: %q", note)
	}
	checkLabels(t, b["shelterCW"], "referral page")
	shoot(t, b["shelterCW"], "referral-"+lang)
	brun(t, b["shelterCW"], "accept",
		chromedp.Click(chromedp.CSS("button.act-accepted")),
		chromedp.Sleep(300*time.Millisecond),
		chromedp.WaitVisible(chromedp.CSS("strong.status")),
		poll(`document.querySelector("strong.status").textContent === "`+w["accepted"]+`"`))

	// IOM sees the ticks and the outcome.
	brun(t, b["iomCW"], "outbox",
		chromedp.Navigate(iom+"/ui/referrals"+q+"&box=outbox"),
		poll(`!!document.querySelector("li.item .tick.read") && document.querySelector("li.item .status").textContent === "`+w["accepted"]+`"`))
	shoot(t, b["iomCW"], "outbox-"+lang)

	// The police ask the shelter for a statement.
	brun(t, b["policeInv"], "request form",
		chromedp.Navigate(police+"/ui/requests/new"+q),
		chromedp.WaitVisible(chromedp.CSS("#to")))
	checkLabels(t, b["policeInv"], "request form")
	shoot(t, b["policeInv"], "request-form-"+lang)
	brun(t, b["policeInv"], "send request",
		chromedp.SendKeys(chromedp.CSS("#to"), "shelter"),
		chromedp.SendKeys(chromedp.CSS("#pseudonym"), "V-2026-0042"),
		chromedp.SendKeys(chromedp.CSS("#legal_basis"), "LP/B/123/XI/2026/NTB"),
		chromedp.SendKeys(chromedp.CSS("#questions"), "What happened at the harbour?\nWho recruited you?"),
		chromedp.Submit(chromedp.CSS("#to")),
		chromedp.WaitVisible(chromedp.CSS(".state-line")))
	reqURL := value(t, b["policeInv"], "location", chromedp.Location())

	// The shelter records consent and answers.
	brun(t, b["shelterCR"], "requests inbox",
		chromedp.Navigate(shelter+"/ui/requests"+q+"&box=inbox"),
		chromedp.WaitVisible(chromedp.CSS("li.item.unread a")),
		chromedp.Click(chromedp.CSS("li.item.unread a")),
		chromedp.WaitVisible(chromedp.CSS("#c-method")))
	checkLabels(t, b["shelterCR"], "consent form")
	shoot(t, b["shelterCR"], "request-consent-"+lang)
	brun(t, b["shelterCR"], "consent",
		chromedp.Click(chromedp.CSS(`input[name=given][value=yes]`)),
		chromedp.Click(chromedp.CSS(`input[name=purposes][value=statement]`)),
		chromedp.SetValue(chromedp.CSS("#c-method"), "written"),
		chromedp.SendKeys(chromedp.CSS("#c-age"), "25"),
		chromedp.SendKeys(chromedp.CSS("#c-notes"), "Explained in Sasak with an interpreter."),
		chromedp.Submit(chromedp.CSS("#c-method")),
		chromedp.WaitVisible(chromedp.CSS("#s-text")))
	shoot(t, b["shelterCR"], "request-answer-"+lang)
	brun(t, b["shelterCR"], "answer",
		chromedp.SendKeys(chromedp.CSS("#s-text"), "I was recruited in Mataram and taken to the harbour."),
		chromedp.SendKeys(chromedp.CSS("#s-taken_by"), "S. Rahma"),
		chromedp.Submit(chromedp.CSS("#s-text")),
		chromedp.WaitVisible(chromedp.CSS(".statement-text")))

	// The police read the statement and the consent that covers it.
	brun(t, b["policeInv"], "statement",
		chromedp.Navigate(reqURL),
		chromedp.WaitVisible(chromedp.CSS(".statement-text")))
	stmt := value(t, b["policeInv"], "statement text", chromedp.Text(chromedp.CSS(".statement-text")))
	if !strings.Contains(stmt, "recruited in Mataram") {
		t.Errorf("statement at the police: %q", stmt)
	}
	shoot(t, b["policeInv"], "request-police-"+lang)

	// The operator's views.
	brun(t, b["iomOp"], "deliveries",
		chromedp.Navigate(iom+"/ui/deliveries"+q),
		chromedp.WaitVisible(chromedp.CSS("table.grid")))
	checkLabels(t, b["iomOp"], "deliveries")
	shoot(t, b["iomOp"], "deliveries-"+lang)
	brun(t, b["iomOp"], "delivery",
		chromedp.Click(chromedp.CSS("table.grid tbody tr a")),
		chromedp.WaitVisible(chromedp.CSS(".receipts")))
	shoot(t, b["iomOp"], "delivery-"+lang)
	brun(t, b["iomOp"], "audit",
		chromedp.Navigate(iom+"/ui/audit"+q),
		chromedp.WaitVisible(chromedp.CSS(".banner.ok")))
	shoot(t, b["iomOp"], "audit-"+lang)
	brun(t, b["iomOp"], "login page", chromedp.Navigate(iom+"/ui/login"+q))
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/accessibility"
	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/dom"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// The web client's end-to-end test: the real binary on its embedded default (dev mode), two
// headless Chromium sessions as two colleagues, walking every section of the brief
// (seed/provider-to-provider-web-chats.txt). Controls are found as a screen reader finds them:
// by role and accessible name (UI.md), through Chromium's own accessibility tree.

// chromiumPath finds Debian's chromium; the test fails without one (CI installs it).
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no Chromium on PATH: the web client's end-to-end test needs one " +
		"(apt-get install chromium; .ci/run installs it)")
	return ""
}

// tab is one browser session, signed in as one person.
type tab struct {
	t   *testing.T
	who string
	ctx context.Context
}

// newTab starts its own Chromium (fresh user-data-dir, the flags of issue 15) and one page.
func newTab(t *testing.T, who string) *tab {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("disable-background-timer-throttling", true),
		// The chime for a new message plays without a click first, as after a person's first
		// click in a real session.
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.WindowSize(1200, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	tb := &tab{t: t, who: who}
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithErrorf(func(f string, a ...any) { t.Logf(who+": chromedp: "+f, a...) }))
	tb.ctx = ctx
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("%s: start Chromium: %v", who, err)
	}
	return tb
}

func (b *tab) fatalf(format string, a ...any) {
	b.t.Helper()
	b.t.Fatalf(b.who+": "+format, a...)
}

func (b *tab) navigate(url string) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, chromedp.Navigate(url)); err != nil {
		b.fatalf("navigate %s: %v", url, err)
	}
}

// eval runs a JavaScript expression in the page and decodes its value into out.
func (b *tab) eval(expr string, out any) {
	b.t.Helper()
	res, err := chromedp.Call(b.ctx, runtime.Evaluate, runtime.EvaluateParams{Expression: expr, ReturnByValue: ptr(true), AwaitPromise: ptr(true)})
	if err != nil {
		b.fatalf("eval %s: %v", expr, err)
	}
	if res.ExceptionDetails != nil {
		b.fatalf("eval %s: %s", expr, exceptionText(res.ExceptionDetails))
	}
	if out != nil {
		if err := json.Unmarshal(res.Result.Value, out); err != nil {
			b.fatalf("eval %s: decode %s: %v", expr, res.Result.Value, err)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func exceptionText(d *runtime.ExceptionDetails) string {
	if d.Exception != nil && d.Exception.Description != "" {
		return d.Exception.Description
	}
	return d.Text
}

// el is an element found in the accessibility tree.
type el struct {
	b    *tab
	id   cdp.BackendNodeID
	desc string
}

// query returns the elements (not ignored by the accessibility tree, so not hidden) under
// root with the given role and name; role "" matches any role.
func (b *tab) query(root *el, role, name string) ([]*el, error) {
	p := accessibility.QueryAXTreeParams{AccessibleName: name, Role: role}
	if root != nil {
		p.BackendNodeID = root.id
	} else {
		doc, err := chromedp.Call(b.ctx, runtime.Evaluate, runtime.EvaluateParams{Expression: "document"})
		if err != nil {
			return nil, err
		}
		p.ObjectID = doc.Result.ObjectID
	}
	res, err := chromedp.Call(b.ctx, accessibility.QueryAXTree, p)
	if err != nil {
		return nil, err
	}
	var out []*el
	for _, n := range res.Nodes {
		if n.Ignored || n.BackendDOMNodeID == 0 {
			continue
		}
		out = append(out, &el{b: b, id: n.BackendDOMNodeID, desc: fmt.Sprintf("%s %q", role, name)})
	}
	return out, nil
}

// wait is how long a person would wait for something to show up; conditions are polled, so
// a fast machine does not wait at all.
const wait = 20 * time.Second

// find waits until exactly one element with role and name is on the page (under root) and
// returns it.
func (b *tab) findIn(root *el, role, name string) *el {
	b.t.Helper()
	deadline := time.Now().Add(wait)
	var last []*el
	var err error
	for time.Now().Before(deadline) {
		last, err = b.query(root, role, name)
		if err == nil && len(last) == 1 {
			return last[0]
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.fatalf("no single %s named %q (found %d, err %v); page text:\n%s", role, name, len(last), err, b.text())
	return nil
}

func (b *tab) find(role, name string) *el { b.t.Helper(); return b.findIn(nil, role, name) }

// has waits for text (any node whose accessible name it is: static text, an image's label).
func (b *tab) has(name string) { b.t.Helper(); b.findAny(nil, "", name) }

// findAny waits until at least one element matches and returns the first.
func (b *tab) findAny(root *el, role, name string) *el {
	b.t.Helper()
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		if found, err := b.query(root, role, name); err == nil && len(found) > 0 {
			return found[0]
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.fatalf("nothing named %q (role %q) appeared; page text:\n%s", name, role, b.text())
	return nil
}

// gone waits until no element with role and name is left.
func (b *tab) gone(role, name string) {
	b.t.Helper()
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		if found, err := b.query(nil, role, name); err == nil && len(found) == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.fatalf("%s %q is still there; page text:\n%s", role, name, b.text())
}

// absent checks, now, that nothing has role and name.
func (b *tab) absent(role, name string) {
	b.t.Helper()
	found, err := b.query(nil, role, name)
	if err != nil {
		b.fatalf("query %s %q: %v", role, name, err)
	}
	if len(found) > 0 {
		b.fatalf("%s %q should not be there; page text:\n%s", role, name, b.text())
	}
}

func (b *tab) text() string {
	var s string
	res, err := chromedp.Call(b.ctx, runtime.Evaluate, runtime.EvaluateParams{Expression: "document.body.innerText", ReturnByValue: ptr(true)})
	if err == nil && res.Result != nil {
		_ = json.Unmarshal(res.Result.Value, &s)
	}
	return s
}

// call runs a JavaScript function with the element as this.
func (e *el) call(fn string, out any) {
	e.b.t.Helper()
	obj, err := chromedp.Call(e.b.ctx, dom.ResolveNode, dom.ResolveNodeParams{BackendNodeID: e.id})
	if err != nil {
		e.b.fatalf("resolve %s: %v", e.desc, err)
	}
	res, err := chromedp.Call(e.b.ctx, runtime.CallFunctionOn, runtime.CallFunctionOnParams{
		FunctionDeclaration: fn, ObjectID: obj.Object.ObjectID, ReturnByValue: ptr(true), AwaitPromise: ptr(true)})
	if err != nil {
		e.b.fatalf("%s on %s: %v", fn, e.desc, err)
	}
	if res.ExceptionDetails != nil {
		e.b.fatalf("%s on %s: %s", fn, e.desc, exceptionText(res.ExceptionDetails))
	}
	if out != nil {
		if err := json.Unmarshal(res.Result.Value, out); err != nil {
			e.b.fatalf("decode %s: %v", res.Result.Value, err)
		}
	}
}

// click clicks the middle of the element with the mouse, as a person would. It waits until
// the element is what the mouse would hit there (the page may still be moving as content
// arrives); an overlay that stays on top of it fails the test.
func (e *el) click() {
	e.b.t.Helper()
	deadline := time.Now().Add(wait)
	var x, y float64
	for {
		var hit bool
		e.call(`function() { this.scrollIntoView({block: 'center'}); return true; }`, nil)
		box, err := chromedp.Call(e.b.ctx, dom.GetBoxModel, dom.GetBoxModelParams{BackendNodeID: e.id})
		if err != nil {
			e.b.fatalf("box of %s: %v", e.desc, err)
		}
		q := box.Model.Border
		x, y = (q[0]+q[2]+q[4]+q[6])/4, (q[1]+q[3]+q[5]+q[7])/4
		e.call(fmt.Sprintf(`function() { const at = document.elementFromPoint(%f, %f); return !!at && (at === this || this.contains(at)); }`, x, y), &hit)
		if hit {
			break
		}
		if time.Now().After(deadline) {
			e.b.fatalf("%s is covered by another element at (%.0f, %.0f)", e.desc, x, y)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, typ := range []input.DispatchMouseEventType{input.DispatchMouseEventTypeMousePressed, input.DispatchMouseEventTypeMouseReleased} {
		if _, err := chromedp.Call(e.b.ctx, input.DispatchMouseEvent, input.DispatchMouseEventParams{
			Type: typ, X: x, Y: y, Button: input.MouseButtonLeft, ClickCount: 1}); err != nil {
			e.b.fatalf("click %s: %v", e.desc, err)
		}
	}
}

// typeText focuses the element and types text into it with the keyboard.
func (e *el) typeText(text string) {
	e.b.t.Helper()
	e.call(`function() { this.focus(); this.select && this.select(); }`, nil)
	if _, err := chromedp.Call(e.b.ctx, input.InsertText, input.InsertTextParams{Text: text}); err != nil {
		e.b.fatalf("type into %s: %v", e.desc, err)
	}
}

// key presses a key (kb.ArrowDown, kb.Escape) on the focused element.
func (b *tab) key(k string) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, chromedp.KeyEvent(k)); err != nil {
		b.fatalf("key %q: %v", k, err)
	}
}

// focused is the accessible name the focused element has, as its text or aria-label.
func (b *tab) focused() string {
	var s string
	b.eval(`(document.activeElement.getAttribute('aria-label') || document.activeElement.textContent).trim()`, &s)
	return s
}

func (b *tab) counters() (sounds, popups int) {
	var c struct{ Sounds, Popups int }
	b.eval(`({sounds: window.huddle.sounds, popups: window.huddle.popups})`, &c)
	return c.Sounds, c.Popups
}

// rowText is the text of the chat row whose button is the chat's title (badge and marks).
func (b *tab) rowText(title string) string {
	var s string
	b.findAny(nil, "button", title).call(`function() { return this.closest('li').innerText; }`, &s)
	return strings.Join(strings.Fields(s), " ")
}

// shot saves a screenshot as <HUDDLE_SCREENSHOTS>/<name>.png when that variable names a
// directory (how docs/screenshots/ is made: HUDDLE_SCREENSHOTS=$PWD/docs/screenshots go test
// -run TestWebClient ./cmd/huddle); otherwise it does nothing.
func (b *tab) shot(name string) {
	b.t.Helper()
	dir := os.Getenv("HUDDLE_SCREENSHOTS")
	if dir == "" {
		return
	}
	time.Sleep(300 * time.Millisecond) // let the last render settle
	png, err := chromedp.Run(b.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// fileInput finds the file input with the accessible name. Chromium's queryAXTree does not
// match file inputs by name (their name lives beside a user-agent shadow tree), so each file
// input's own accessibility node is read instead.
func (b *tab) fileInput(name string) *el {
	b.t.Helper()
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		for i := 0; ; i++ {
			obj, err := chromedp.Call(b.ctx, runtime.Evaluate, runtime.EvaluateParams{
				Expression: fmt.Sprintf("document.querySelectorAll('input[type=file]')[%d]", i)})
			if err != nil || obj.Result.ObjectID == "" {
				break
			}
			tree, err := chromedp.Call(b.ctx, accessibility.GetPartialAXTree, accessibility.GetPartialAXTreeParams{
				ObjectID: obj.Result.ObjectID, FetchRelatives: ptr(false)})
			if err != nil || len(tree.Nodes) == 0 {
				continue
			}
			n := tree.Nodes[0]
			var got string
			if n.Name != nil {
				_ = json.Unmarshal(n.Name.Value, &got)
			}
			if !n.Ignored && got == name {
				return &el{b: b, id: n.BackendDOMNodeID, desc: "file input " + name}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.fatalf("no file input named %q", name)
	return nil
}

func (b *tab) openChats() {
	b.t.Helper()
	b.find("button", "Chats").click()
	b.find("region", "Recent chats")
}

// inDropdown is the button with the name in the open chats dropdown.
func (b *tab) inDropdown(name string) *el {
	b.t.Helper()
	return b.findIn(b.find("region", "Recent chats"), "button", name)
}

func (b *tab) openChatFromDropdown(title string) {
	b.t.Helper()
	b.openChats()
	b.findIn(b.find("region", "Recent chats"), "button", title).click()
	b.find("heading", title)
}

func (b *tab) send(text string) {
	b.t.Helper()
	b.find("textbox", "Message").typeText(text)
	b.find("button", "Send").click()
	b.findAny(b.find("log", "Messages"), "", text)
}

// pickContact clicks the person once the address-book search shows only them (it answers
// as you type: a result of an earlier query may still be replaced under the mouse).
func (b *tab) pickContact(name string) {
	b.t.Helper()
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		if lists, err := b.query(nil, "list", "Contacts"); err == nil && len(lists) == 1 {
			all, err1 := b.query(lists[0], "button", "")
			it, err2 := b.query(lists[0], "button", name)
			if err1 == nil && err2 == nil && len(all) == 1 && len(it) == 1 {
				it[0].click()
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.fatalf("the contact search never showed %q alone; page text:\n%s", name, b.text())
}

func (b *tab) chatOption(item string) {
	b.t.Helper()
	b.find("button", "Chat options").click()
	b.find("menuitem", item).click()
}

func TestWebClient_TwoColleaguesWalkTheArticle(t *testing.T) {
	s := newServer(t)
	s.env = append(s.env, "HUDDLE_RATE_PER_USER=0") // the walk is quicker than any person
	s.start()

	alice := newTab(t, "alice")
	bob := newTab(t, "bob")

	// Sign in, dev mode: an empty directory offers demo staff; then pick a person.
	alice.navigate(s.base + "/")
	alice.find("heading", "Dev mode: pick a person")
	alice.shot("1-dev-sign-in")
	alice.find("button", "Add demo staff").click()
	alice.find("button", "Alice Adams").click()
	alice.find("button", "Chats")
	alice.has("Alice Adams") // the name next to the chat bubble

	// Sign in with a pasted token, sign out, then with /#token=: the token leaves the address
	// bar and stays in the tab.
	bobToken := s.run("token", "--user", "bob", "--clinic", "c1", "--role", "staff")
	bob.navigate(s.base + "/")
	bob.find("heading", "Dev mode: pick a person") // the page has settled
	bob.find("textbox", "Bearer token").typeText(bobToken)
	bob.find("button", "Sign in").click()
	bob.find("button", "Sign out").click()
	bob.find("heading", "Sign in to Huddle")
	bob.navigate(s.base + "/#token=" + bobToken)
	bob.find("button", "Chats")
	var where struct{ URL, Stored string }
	bob.eval(`({url: location.href, stored: sessionStorage.getItem('huddle.token')})`, &where)
	if strings.Contains(where.URL, "token") || where.Stored != bobToken {
		t.Fatalf("bob: after /#token= the address is %q and the stored token %d bytes; want it out of the address and kept", where.URL, len(where.Stored))
	}

	// History with infinite scroll upward: Carol wrote 40 messages before Alice looks.
	carolToken := s.run("token", "--user", "carol", "--clinic", "c1", "--role", "staff")
	var carolChat struct{ ID string }
	s.expect(201, "POST", "/v1/conversations", carolToken, `{"participant_ids":["alice"]}`).json(t, &carolChat)
	for i := 1; i <= 40; i++ {
		s.expect(201, "POST", "/v1/conversations/"+carolChat.ID+"/messages", carolToken, fmt.Sprintf(`{"text":"carol note %d"}`, i))
	}
	alice.findAny(nil, "dialog", "New message in Carol Chen") // the pop-up chat box
	// Open the chat once the read models hold all 40 (its preview is the last), so the first
	// page is the newest 30 and the oldest can only come from scrolling up.
	alice.openChats()
	var row string
	waitFor(t, "the last of Carol's messages in Alice's chat list", func() bool {
		row = alice.rowText("Carol Chen")
		return strings.Contains(row, "carol note 40")
	}, &row)
	alice.key(kb.Escape)
	alice.openChatFromDropdown("Carol Chen")
	log := alice.find("log", "Messages")
	alice.findAny(log, "", "carol note 40")
	if found, _ := alice.query(log, "", "carol note 1"); len(found) != 0 {
		t.Fatal("alice: the first page of history already holds the oldest message; the scroll test proves nothing")
	}
	log.call(`function() { this.scrollTop = 0; this.dispatchEvent(new Event('scroll')); }`, nil)
	alice.findAny(log, "", "carol note 1")
	alice.shot("3-chat-history")

	// New Chat: the address book as you type, "No result", then the direct chat.
	alice.openChats()
	alice.inDropdown("New Chat").click()
	search := alice.find("searchbox", "Search contacts")
	search.typeText("zzz-nobody")
	alice.has("No result")
	alice.shot("4-new-chat-no-result")
	search.typeText("bob")
	alice.pickContact("Bob Brown")
	alice.find("heading", "Bob Brown")
	alice.send("Room 4 is ready for your patient")

	// Bob, elsewhere in the client, gets the pop-up and the chime, live.
	popup := bob.find("dialog", "New message in Alice Adams")
	bob.shot("5-pop-up-chat-box")
	if sounds, _ := bob.counters(); sounds < 1 {
		t.Fatalf("bob: a new message in an unmuted chat played no sound")
	}
	bob.findIn(popup, "button", "Open chat").click()
	bob.find("heading", "Alice Adams")
	bob.findAny(bob.find("log", "Messages"), "", "Room 4 is ready for your patient")
	// From the keyboard: Enter sends.
	bob.find("textbox", "Message").typeText("On my way")
	bob.key(kb.Enter)
	bob.findAny(bob.find("log", "Messages"), "", "On my way")
	alice.findAny(alice.find("log", "Messages"), "", "On my way") // live into the open chat

	// A file, with its download on the other side.
	dir := t.TempDir()
	upload := filepath.Join(dir, "labs.txt")
	if err := os.WriteFile(upload, []byte("potassium 4.1 mmol/L\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The progress bar's highest value, recorded as it changes (a small file is quick).
	alice.eval(`window.maxProgress = 0; new MutationObserver(() => {
		const p = document.querySelector('progress');
		if (p && !p.hidden) window.maxProgress = Math.max(window.maxProgress, p.value);
	}).observe(document.body, {subtree: true, attributes: true, attributeFilter: ['value', 'hidden']}); true`, nil)
	fileInput := alice.fileInput("Send a file")
	if _, err := chromedp.Call(alice.ctx, dom.SetFileInputFiles, dom.SetFileInputFilesParams{Files: []string{upload}, BackendNodeID: fileInput.id}); err != nil {
		t.Fatalf("alice: choose a file: %v", err)
	}
	alice.find("button", "Download labs.txt")
	var progress float64
	alice.eval(`window.maxProgress`, &progress)
	if progress != 100 {
		t.Fatalf("alice: the upload's progress bar reached %v, want 100", progress)
	}
	downloads := t.TempDir()
	if _, err := chromedp.CallBrowser(bob.ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: downloads}); err != nil {
		t.Fatalf("bob: allow downloads: %v", err)
	}
	bob.find("button", "Download labs.txt").click()
	waitFile(t, filepath.Join(downloads, "labs.txt"), "potassium 4.1 mmol/L\n")

	// A group, then the participants panel: add by address-book search, remove and confirm.
	alice.openChats()
	alice.inDropdown("New Chat").click()
	alice.find("checkbox", "Group chat").click()
	alice.find("textbox", "Group name").typeText("Ward 3 huddle")
	alice.find("searchbox", "Search contacts").typeText("bob")
	alice.pickContact("Bob Brown")
	alice.find("button", "Create group").click()
	alice.find("heading", "Ward 3 huddle")
	alice.find("button", "Edit participants").click()
	alice.find("searchbox", "Search contacts").typeText("carol")
	alice.pickContact("Carol Chen")
	alice.shot("6-participants-add")
	alice.find("button", "Add").click()
	alice.has("You added Carol Chen")
	alice.find("button", "Remove Carol Chen").click()
	alice.find("button", "Confirm").click()
	alice.has("You removed Carol Chen")
	alice.gone("button", "Remove Carol Chen")
	alice.find("button", "Done editing").click()

	// The options menu by keyboard: arrows inside, Escape back to the button.
	alice.find("button", "Chat options").call(`function() { this.focus(); }`, nil)
	alice.key(kb.ArrowDown)
	if got := alice.focused(); got != "Mute Notifications" {
		t.Fatalf("alice: ArrowDown on Chat options focused %q, want the first item", got)
	}
	alice.key(kb.Escape)
	if got := alice.focused(); got != "Chat options" {
		t.Fatalf("alice: Escape left the focus on %q, want Chat options", got)
	}

	// Bob mutes the group: the muted-bell mark, and no pop-up or sound for it.
	bob.openChatFromDropdown("Ward 3 huddle")
	bob.find("button", "Chat options").click()
	bob.absent("menuitem", "Delete group") // owner only
	bob.find("menuitem", "Mute Notifications").click()
	bob.find("image", "Muted")
	bob.openChats()
	bob.shot("2-chats-dropdown-muted")
	bob.key(kb.Escape)
	bob.openChats()
	bob.inDropdown("See All Chats").click()
	bob.find("heading", "All chats")
	sounds, popups := bob.counters()
	alice.send("Quiet please, rounds")
	waitFor(t, "bob's unread badge on the muted group", func() bool {
		row = bob.rowText("Ward 3 huddle")
		return strings.Contains(row, "unread: 1")
	}, &row)
	alice.openChatFromDropdown("Bob Brown")
	alice.send("Are you free?")
	bob.find("dialog", "New message in Alice Adams")
	bob.absent("dialog", "New message in Ward 3 huddle")
	if s2, p2 := bob.counters(); s2 != sounds+1 || p2 != popups+1 {
		t.Fatalf("bob: sounds %d -> %d and pop-ups %d -> %d over a muted and an unmuted message; want one each (the unmuted one)", sounds, s2, popups, p2)
	}

	// Resume: Bob's connection drops; what Alice sends meanwhile arrives once it is back.
	bob.eval(`window.huddle.dropStream()`, nil)
	alice.send("Sent while your stream was down")
	bob.findAny(nil, "", "Alice Adams: Sent while your stream was down")

	// Archive: the chat leaves the list; New Chat brings it back.
	bob.openChatFromDropdown("Alice Adams")
	bob.chatOption("Archive chat")
	bob.openChats()
	bob.gone("button", "Alice Adams")
	bob.inDropdown("New Chat").click()
	bob.find("searchbox", "Search contacts").typeText("alice")
	bob.pickContact("Alice Adams")
	bob.find("heading", "Alice Adams")
	bob.openChats()
	bob.findIn(bob.find("region", "Recent chats"), "button", "Alice Adams")
	bob.key(kb.Escape)

	// An archived group comes back through New Chat too, found by its name.
	bob.openChatFromDropdown("Ward 3 huddle")
	bob.chatOption("Archive chat")
	bob.openChats()
	bob.gone("button", "Ward 3 huddle")
	bob.inDropdown("New Chat").click()
	bob.find("searchbox", "Search contacts").typeText("ward 3")
	bob.findIn(bob.find("list", "Archived chats"), "button", "Ward 3 huddle").click()
	bob.find("heading", "Ward 3 huddle")

	// Leave: confirm, then the system line and the closed input.
	bob.openChatFromDropdown("Ward 3 huddle")
	bob.chatOption("Unmute Notifications")
	bob.gone("image", "Muted")
	bob.chatOption("Leave group")
	leave := bob.find("dialog", "Leave this group?")
	bob.shot("7-leave-group-confirm")
	if got := bob.focused(); got != "Cancel" {
		t.Fatalf("bob: the Leave confirmation put the focus on %q, want the safe choice, Cancel", got)
	}
	bob.findIn(leave, "button", "Leave").click()
	bob.has("You left the group")
	bob.has("You cannot send chat to this group")
	bob.gone("textbox", "Message")
	bob.shot("8-left-the-group")

	// Delete (owner only, confirmed): gone from every member's list.
	alice.openChatFromDropdown("Ward 3 huddle")
	alice.chatOption("Delete group")
	alice.findIn(alice.find("dialog", "Delete this group?"), "button", "Delete").click()
	alice.find("heading", "Welcome, Alice Adams")
	alice.openChats()
	alice.gone("button", "Ward 3 huddle")
	bob.find("heading", "Welcome, Bob Brown") // his open chat closed as it went
	bob.openChats()
	bob.gone("button", "Ward 3 huddle")

	// A phone's width: nothing runs off the side, and the controls are still reachable.
	if _, err := chromedp.Call(alice.ctx, emulation.SetDeviceMetricsOverride, emulation.SetDeviceMetricsOverrideParams{
		Width: 375, Height: 740, DeviceScaleFactor: 2, Mobile: true}); err != nil {
		t.Fatalf("alice: phone width: %v", err)
	}
	alice.key(kb.Escape)
	alice.openChatFromDropdown("Bob Brown")
	alice.send("Sent from a phone")
	var overflow bool
	alice.eval(`document.documentElement.scrollWidth > window.innerWidth`, &overflow)
	if overflow {
		t.Fatal("alice: at 375 px the page scrolls sideways")
	}
	bob.findAny(nil, "", "Sent from a phone")
	alice.shot("9-phone")
}

// waitFor polls ok; on a time-out it reports what, and the last value seen when given.
func waitFor(t *testing.T, what string, ok func() bool, seen ...*string) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !ok() {
		if time.Now().After(deadline) {
			last := ""
			if len(seen) > 0 {
				last = ": last saw " + strconv.Quote(*seen[0])
			}
			t.Fatalf("timed out waiting for %s%s", what, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func waitFile(t *testing.T, path, want string) {
	t.Helper()
	var got []byte
	var err error
	waitFor(t, "the download "+path, func() bool {
		got, err = os.ReadFile(path)
		return err == nil && len(got) == len(want)
	})
	if string(got) != want {
		t.Fatalf("downloaded %q, want %q", got, want)
	}
	if errors.Is(err, os.ErrNotExist) {
		t.Fatal("no download")
	}
}

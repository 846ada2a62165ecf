package main

import (
	"strings"
	"testing"

	"github.com/chromedp/cdproto/dom"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// The web client's clinical messaging (API-v1.1.md "Groups" and "Clinical messaging", names
// from UI.md), end to end: the real binary, two Chromium sessions as Alice and Bob. Each step
// is a subtest so a run says which of them work; later steps build on the chats earlier ones
// opened.

// in is the tab reporting to t (a subtest), so a failure stops that step only.
func (b *tab) in(t *testing.T) *tab {
	c := *b
	c.t = t
	return &c
}

// message waits for a message of the open chat's history with the text and returns its
// list item: what it says about itself (Urgent, (edited), Seen by) and its buttons are
// looked for inside it.
func (b *tab) message(text string) *el {
	b.t.Helper()
	node := b.findAny(b.find("log", "Messages"), "", text)
	obj, err := chromedp.Call(b.ctx, dom.ResolveNode, dom.ResolveNodeParams{BackendNodeID: node.id})
	if err != nil {
		b.fatalf("resolve the message %q: %v", text, err)
	}
	li, err := chromedp.Call(b.ctx, runtime.CallFunctionOn, runtime.CallFunctionOnParams{
		FunctionDeclaration: `function() { return (this.nodeType === 1 ? this : this.parentElement).closest('li'); }`,
		ObjectID:            obj.Object.ObjectID})
	if err != nil || li.ExceptionDetails != nil || li.Result.ObjectID == "" {
		b.fatalf("the message %q is in no list item (%v)", text, err)
	}
	d, err := chromedp.Call(b.ctx, dom.DescribeNode, dom.DescribeNodeParams{ObjectID: li.Result.ObjectID})
	if err != nil {
		b.fatalf("describe the message %q: %v", text, err)
	}
	return &el{b: b, id: d.Node.BackendNodeID, desc: "message " + text}
}

// lacks checks, now, that nothing under root has the name.
func (b *tab) lacks(root *el, name string) {
	b.t.Helper()
	found, err := b.query(root, "", name)
	if err != nil {
		b.fatalf("query %q: %v", name, err)
	}
	if len(found) > 0 {
		b.fatalf("%q should not be in %s; page text:\n%s", name, root.desc, b.text())
	}
}

// reload loads the client again and waits until it has settled on the home page (the lists
// are in: a click before then may land on a row about to be redrawn).
func (b *tab) reload(base, name string) {
	b.t.Helper()
	b.navigate(base + "/")
	b.find("heading", "Welcome, "+name)
}

// sendUrgent types text, ticks Urgent beside Send and sends.
func (b *tab) sendUrgent(text string) {
	b.t.Helper()
	b.find("textbox", "Message").typeText(text)
	b.find("checkbox", "Urgent").click()
	b.find("button", "Send").click()
	b.message(text)
	var checked bool
	b.find("checkbox", "Urgent").call(`function() { return this.checked; }`, &checked)
	if checked {
		b.fatalf("Urgent is still ticked after sending: it must apply to one message only")
	}
}

func TestWebClient_ClinicalMessaging(t *testing.T) {
	s := newServer(t)
	s.env = append(s.env, "HUDDLE_RATE_PER_USER=0", "HUDDLE_URGENT_REMIND_EVERY=1s")
	s.start()

	alice := newTab(t, "alice")
	bob := newTab(t, "bob")
	alice.navigate(s.base + "/")
	alice.find("button", "Add demo staff").click()
	alice.find("button", "Alice Adams").click()
	alice.find("heading", "Welcome, Alice Adams")
	bob.navigate(s.base + "/#token=" + s.run("token", "--user", "bob", "--clinic", "c1", "--role", "staff"))
	bob.find("heading", "Welcome") // no chat yet to learn his name from

	alice.openChats()
	alice.inDropdown("New Chat").click()
	alice.find("searchbox", "Search contacts").typeText("bob")
	alice.pickContact("Bob Brown")
	alice.find("heading", "Bob Brown")
	alice.send("Morning, Bob")
	bob.find("dialog", "New message in Alice Adams")

	const urgentText = "Bed 4 is deteriorating, come now"
	t.Run("urgent message and its acknowledgement", func(t *testing.T) {
		alice, bob := alice.in(t), bob.in(t)
		alice.sendUrgent(urgentText)
		mine := alice.message(urgentText)
		alice.findAny(mine, "", "Urgent")
		alice.findAny(mine, "", "Waiting for Bob Brown")

		// Bob, away from the chat: the list of urgent messages waiting for him.
		bar := bob.find("region", "Urgent messages waiting for you")
		bob.findAny(bar, "", "1 waiting")
		bob.findIn(bar, "button", "Open chat").click()
		bob.find("heading", "Alice Adams")
		var focus string
		waitFor(t, "the focus on the message's Acknowledge, from the urgent list", func() bool {
			focus = bob.focused()
			return focus == "Acknowledge"
		}, &focus)
		theirs := bob.message(urgentText)
		bob.findAny(theirs, "", "Urgent")
		ack := bob.findIn(theirs, "button", "Acknowledge")
		bob.shot("10-urgent-acknowledge")
		ack.click()
		bob.gone("button", "Acknowledge")
		bob.gone("region", "Urgent messages waiting for you")
		bob.findAny(bob.message(urgentText), "", "You acknowledged")

		alice.findAny(alice.message(urgentText), "", "Acknowledged by Bob Brown")
		var said string
		waitFor(t, "alice told that Bob acknowledged", func() bool {
			alice.eval(`document.getElementById('announcer').textContent`, &said)
			return said == "Bob Brown acknowledged your urgent message in Bob Brown"
		}, &said)
		alice.shot("11-urgent-acknowledged")

		// From the read models after a reload, not from the events: the same.
		alice.reload(s.base, "Alice Adams")
		alice.openChatFromDropdown("Bob Brown")
		mine = alice.message(urgentText)
		alice.findAny(mine, "", "Acknowledged by Bob Brown")
		alice.lacks(mine, "Waiting for Bob Brown")
		bob.reload(s.base, "Bob Brown")
		bob.openChatFromDropdown("Alice Adams")
		bob.findAny(bob.message(urgentText), "", "You acknowledged")
		bob.absent("button", "Acknowledge")
	})

	t.Run("seen by", func(t *testing.T) {
		alice, bob := alice.in(t), bob.in(t)
		bob.openChats()
		bob.inDropdown("See All Chats").click()
		bob.find("heading", "All chats")
		alice.openChatFromDropdown("Bob Brown")
		alice.send("Are the labs back?")
		alice.lacks(alice.message("Are the labs back?"), "Seen by Bob Brown") // he has not opened it
		bob.openChatFromDropdown("Alice Adams")
		bob.message("Are the labs back?")
		alice.findAny(alice.message("Are the labs back?"), "", "Seen by Bob Brown")
		alice.shot("12-seen-by")
	})

	t.Run("edit message", func(t *testing.T) {
		alice, bob := alice.in(t), bob.in(t)
		alice.findIn(alice.message("Are the labs back?"), "button", "Message options").click()
		alice.find("menuitem", "Edit message").click()
		// Escape cancels: the text stays, the focus goes back to the message's options.
		alice.find("textbox", "Edit message text").typeText("Never mind")
		alice.key(kb.Escape)
		alice.gone("textbox", "Edit message text")
		alice.message("Are the labs back?")
		if got := alice.focused(); got != "Message options" {
			t.Fatalf("alice: Escape left the focus on %q, want Message options", got)
		}
		// From the keyboard: ArrowDown opens the menu on Edit message, Enter picks it, Enter saves.
		alice.key(kb.ArrowDown)
		if got := alice.focused(); got != "Edit message" {
			t.Fatalf("alice: ArrowDown on Message options focused %q, want Edit message", got)
		}
		alice.key(kb.Enter)
		alice.find("textbox", "Edit message text").typeText("Are the potassium labs back?")
		alice.key(kb.Enter)
		alice.gone("textbox", "Edit message text")
		alice.findAny(alice.message("Are the potassium labs back?"), "", "(edited)")
		alice.gone("", "Are the labs back?")
		bob.findAny(bob.message("Are the potassium labs back?"), "", "(edited)")
		bob.gone("", "Are the labs back?")
		bob.absent("button", "Message options") // not his message
		bob.shot("13-edited")
	})

	t.Run("recall message", func(t *testing.T) {
		alice, bob := alice.in(t), bob.in(t)
		const wrong = "Wrong patient: ignore the last order"
		alice.send(wrong)
		bob.message(wrong)
		alice.findIn(alice.message(wrong), "button", "Message options").click()
		alice.find("menuitem", "Recall message").click()
		confirm := alice.find("dialog", "Recall this message?")
		if got := alice.focused(); got != "Cancel" {
			t.Fatalf("alice: the Recall confirmation put the focus on %q, want Cancel", got)
		}
		alice.findIn(confirm, "button", "Recall").click()
		alice.gone("", wrong)
		alice.has("Message recalled")
		bob.gone("", wrong)
		bob.has("Message recalled")
		bob.shot("14-recalled")
		// After a reload too: the read models keep the place, not the text.
		bob.reload(s.base, "Bob Brown")
		bob.openChatFromDropdown("Alice Adams")
		bob.has("Message recalled")
		bob.absent("", wrong)
	})

	t.Run("untitled group", func(t *testing.T) {
		alice, bob := alice.in(t), bob.in(t)
		alice.openChats()
		alice.inDropdown("New Chat").click()
		alice.find("checkbox", "Group chat").click()
		search := alice.find("searchbox", "Search contacts")
		search.typeText("bob")
		alice.pickContact("Bob Brown")
		search.typeText("carol")
		alice.pickContact("Carol Chen")
		alice.find("button", "Create group").click()
		alice.find("heading", "Bob Brown, Carol Chen")
		bob.openChats()
		bob.inDropdown("Alice Adams, Carol Chen")
		bob.key(kb.Escape)
	})

	const code = "Code blue, ward 3"
	t.Run("urgent in a group waits for each member", func(t *testing.T) {
		alice, bob := alice.in(t), bob.in(t)
		alice.find("heading", "Bob Brown, Carol Chen")
		alice.sendUrgent(code)
		alice.findAny(alice.message(code), "", "Waiting for Bob Brown, Carol Chen")
		bob.findAny(bob.find("region", "Urgent messages waiting for you"), "", "1 waiting")
	})

	t.Run("reminder", func(t *testing.T) {
		bob := bob.in(t)
		var n int
		var seen string
		waitFor(t, "a reminder of the urgent message on bob's stream", func() bool {
			bob.eval(`window.huddle.reminders`, &n)
			seen = bob.text()
			return n > 0
		}, &seen)
		var said string
		waitFor(t, "the reminder read out", func() bool {
			bob.eval(`document.getElementById('announcer').textContent`, &said)
			return strings.HasPrefix(said, "Reminder:")
		}, &said)
		var bar string
		bob.find("region", "Urgent messages waiting for you").call(`function() { return this.innerText; }`, &bar)
		if !strings.Contains(bar, "reminder ") {
			t.Fatalf("bob: the urgent list does not count the reminders: %q", bar)
		}
	})

	t.Run("acknowledged by some, waiting for others", func(t *testing.T) {
		alice, bob := alice.in(t), bob.in(t)
		bob.openChatFromDropdown("Alice Adams, Carol Chen")
		bob.findIn(bob.message(code), "button", "Acknowledge").click()
		bob.gone("button", "Acknowledge")
		mine := alice.message(code)
		alice.findAny(mine, "", "Acknowledged by Bob Brown")
		alice.findAny(mine, "", "Waiting for Carol Chen")
		alice.shot("15-group-acks")
	})

	t.Run("rename group", func(t *testing.T) {
		alice, bob := alice.in(t), bob.in(t)
		alice.chatOption("Rename group")
		dlg := alice.find("dialog", "Rename group")
		alice.findIn(dlg, "textbox", "Group name").typeText("Ward 3 huddle")
		alice.findIn(dlg, "button", "Save").click()
		alice.find("heading", "Ward 3 huddle")
		alice.has("You renamed the group")
		if got := alice.focused(); got != "Chat options" {
			t.Fatalf("alice: after renaming the focus is on %q, want Chat options", got)
		}
		bob.find("heading", "Ward 3 huddle")
		bob.has("Alice Adams renamed the group")
	})

	t.Run("urgent through mute", func(t *testing.T) {
		alice, bob := alice.in(t), bob.in(t)
		bob.chatOption("Mute Notifications")
		bob.find("image", "Muted")
		bob.openChats()
		bob.inDropdown("See All Chats").click()
		bob.find("heading", "All chats")
		sounds, popups := bob.counters()
		// From the keyboard: Space ticks Urgent.
		alice.find("textbox", "Message").typeText("Rapid response, bed 2")
		alice.find("checkbox", "Urgent").call(`function() { this.focus(); }`, nil)
		alice.key(" ")
		alice.key(kb.Enter) // on a checkbox: submits the form, as Send would
		alice.findAny(alice.message("Rapid response, bed 2"), "", "Urgent")
		bob.find("dialog", "New message in Ward 3 huddle")
		if s2, p2 := bob.counters(); s2 <= sounds || p2 != popups+1 {
			t.Fatalf("bob: an urgent message in a muted chat moved sounds %d -> %d and pop-ups %d -> %d; want a chime and one pop-up", sounds, s2, popups, p2)
		}
	})
}

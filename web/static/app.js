// Huddle's web client: the screens of the provider-to-provider chat article (sign-in, the chats
// dropdown, See All Chats, New Chat, a chat with its participants panel and options menu) and
// clinical messaging (urgent messages and their acknowledgements, read receipts, edit and
// recall: API-v1.1.md), over the public API and the live stream. Control names are fixed by
// UI.md: people using a screen reader, and the end-to-end tests, find controls by them.

import * as api from './api.js';
import { openStream } from './sse.js';
import { h, replace, icon } from './dom.js';

const RECENT = 8; // chats shown in the dropdown
const PAGE = 20; // chats per page of See All Chats
const HISTORY = 30; // messages per page of a chat's history
const LIVE = 50; // stream messages kept per chat, to fill a history page the read models lag

const app = document.getElementById('app');
const announcer = document.getElementById('announcer');

// Tests (and curious people) can read how often the client chimed: sound is otherwise
// invisible to a headless browser.
window.huddle = { sounds: 0, popups: 0, reminders: 0, dropStream: () => S.stream && S.stream.drop() };

const S = {
  me: null, // {id, clinic, name}
  names: new Map(), // user id -> name
  convs: new Map(), // conversation id -> Summary, the chat list (not archived)
  allCursor: undefined, // next page of the chat list; null once all are loaded
  unreadTotal: 0,
  view: 'home',
  chat: null, // the open chat
  stream: null,
  live: new Map(), // conversation id -> the last LIVE messages the stream brought
  urgent: [], // urgent messages waiting for my acknowledgement (GET /v1/urgent), oldest first
  reminded: new Map(), // message id -> how many reminders the stream brought for it
};

function announce(text) {
  announcer.textContent = '';
  // A fresh text node after a tick makes screen readers speak a repeated message again.
  setTimeout(() => { announcer.textContent = text; }, 50);
}

function showError(err) {
  const el = document.getElementById('error');
  const text = err instanceof api.ApiError || err instanceof Error ? err.message : String(err);
  if (el) {
    replace(el, h('p', {}, text), h('button', { type: 'button', onclick: () => replace(el) }, 'Dismiss'));
  } else {
    announce(text);
  }
}

function nameOf(id) {
  if (S.me && id === S.me.id) return S.me.name || id;
  return S.names.get(id) || id;
}

function learnNames(people) {
  for (const p of people || []) if (p && p.id && p.name) S.names.set(p.id, p.name);
}

function titleOf(c) {
  if (c.title) return c.title;
  const others = (c.participants || []).filter((p) => p.id !== S.me.id).map((p) => p.name || p.id);
  return others.join(', ') || 'Chat';
}

// ---------------------------------------------------------------- sign-in

async function boot() {
  // /#token=<jwt>: take the token, keep it for this tab only, and clear it from the address
  // bar so it is neither bookmarked nor shown over a shoulder.
  const m = location.hash.match(/(?:^#|&)token=([^&]+)/);
  if (m) {
    api.setToken(decodeURIComponent(m[1]));
    sessionStorage.removeItem('huddle.name');
    history.replaceState(null, '', location.pathname + location.search);
  }
  const claims = api.token() ? api.claims() : null;
  if (!claims || !claims.sub || (claims.exp && claims.exp * 1000 < Date.now())) {
    api.clearToken();
    return signInPage();
  }
  S.me = { id: claims.sub, clinic: claims.clinic, name: sessionStorage.getItem('huddle.name') || claims.name || '' };
  try {
    await start();
  } catch (err) {
    if (err.status === 401 || err.status === 403) {
      api.clearToken();
      return signInPage(`Signing in failed: ${err.message}`);
    }
    throw err;
  }
}

async function signInPage(problem) {
  document.title = 'Sign in · Huddle';
  const error = h('div', { id: 'error', role: 'alert' }, problem ? h('p', {}, problem) : null);
  const tokenBox = h('textarea', { id: 'token', rows: 3, autocomplete: 'off', spellcheck: 'false' });
  const devBox = h('div', {});
  replace(app, h('main', { id: 'main', class: 'signin', tabindex: '-1' },
    h('h1', {}, 'Sign in to Huddle'),
    error,
    devBox,
    h('section', { 'aria-labelledby': 'token-h' },
      h('h2', { id: 'token-h' }, 'Sign in with a token'),
      h('p', {}, 'Paste the bearer token your clinic gave you, or open ', h('code', {}, '/#token=<token>'), '.'),
      h('form', {
        onsubmit: (e) => {
          e.preventDefault();
          const t = tokenBox.value.trim();
          if (!api.claims(t)) return showError('That is not a token (a JWT has three parts separated by dots).');
          api.setToken(t);
          sessionStorage.removeItem('huddle.name');
          boot().catch(showError);
        },
      },
      h('label', { for: 'token' }, 'Bearer token'), tokenBox,
      h('button', { type: 'submit', class: 'primary' }, 'Sign in')))));
  let users = null;
  try { users = await api.devUsers('c1'); } catch { users = null; }
  if (users !== null) devSignIn(devBox, 'c1', users);
}

// devSignIn lists a clinic's directory to pick from: only the embedded default's dev mode has
// the endpoint behind it.
function devSignIn(box, clinic, users) {
  const clinicInput = h('input', { id: 'clinic', value: clinic, autocomplete: 'off' });
  const list = h('ul', { class: 'people' });
  const render = (us) => {
    if (us.length === 0) {
      replace(list, h('li', {}, h('p', {}, 'No one is in this clinic\'s directory yet.'),
        h('button', { type: 'button', onclick: () => addDemoStaff(clinicInput.value.trim()).then(load).catch(showError) }, 'Add demo staff')));
      return;
    }
    replace(list, us.map((u) => h('li', {},
      h('button', {
        type: 'button', class: 'person', 'aria-describedby': `email-${u.id}`,
        onclick: async () => {
          try {
            api.setToken(await api.devToken(clinicInput.value.trim(), u.id));
            sessionStorage.setItem('huddle.name', u.name);
            await boot();
          } catch (err) { showError(err); }
        },
      }, u.name),
      h('span', { id: `email-${u.id}`, class: 'email' }, u.email + (u.title ? ` · ${u.title}` : '')))));
  };
  const load = async () => {
    try { render(await api.devUsers(clinicInput.value.trim()) || []); } catch (err) { showError(err); }
  };
  replace(box, h('section', { 'aria-labelledby': 'dev-h', class: 'dev' },
    h('h2', { id: 'dev-h' }, 'Dev mode: pick a person'),
    h('p', {}, 'This server signs tokens with a generated secret, so anyone on this machine may sign in as anyone. Set HUDDLE_JWT_SECRET to turn dev mode off.'),
    h('form', { class: 'row', onsubmit: (e) => { e.preventDefault(); load(); } },
      h('label', { for: 'clinic' }, 'Clinic'), clinicInput,
      h('button', { type: 'submit' }, 'Show people')),
    list));
  render(users);
}

// addDemoStaff fills an empty directory with four colleagues sharing a waiting room (so they
// are each other's contacts), through the admin API with a dev admin token.
async function addDemoStaff(clinic) {
  const admin = await api.devToken(clinic, 'admin', 'admin');
  const put = async (path, body) => {
    const res = await fetch(path, {
      method: 'PUT',
      headers: { Authorization: `Bearer ${admin}`, ...(body ? { 'Content-Type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    if (!res.ok) throw new api.ApiError(res.status, await res.json().catch(() => ({})));
  };
  const people = [['alice', 'Alice Adams', 'Physician'], ['bob', 'Bob Brown', 'Nurse'],
    ['carol', 'Carol Chen', 'Medical assistant'], ['dan', 'Dan Diaz', 'Front desk']];
  await put('/v1/admin/rooms/front', { name: 'Front desk' });
  for (const [id, name, title] of people) {
    await put(`/v1/admin/users/${id}`, { name, email: `${id}@example.com`, title });
    await put(`/v1/admin/rooms/front/members/${id}`);
  }
  // The directory list is a read model: give it a moment to catch up.
  for (let i = 0; i < 20; i++) {
    const us = await api.devUsers(clinic);
    if (us && us.length >= people.length) return;
    await new Promise((r) => setTimeout(r, 250));
  }
}

function signOut() {
  if (S.stream) S.stream.close();
  api.clearToken();
  sessionStorage.removeItem('huddle.name');
  location.reload();
}

// ---------------------------------------------------------------- the signed-in shell

async function start() {
  S.view = 'loading';
  renderShell();
  // The stream opens first so nothing that happens while the lists load is missed; `reset`
  // (the server could not resume) reloads everything.
  await new Promise((resolve, reject) => {
    let first = true;
    S.stream = openStream({
      headers: () => ({ Authorization: `Bearer ${api.token()}` }),
      onEvent,
      onState: (state, status) => {
        document.body.dataset.stream = state;
        if (state === 'open' && first) { first = false; resolve(); }
        if (state === 'open' && !first) refreshAll().catch(() => {});
        if (state === 'denied') {
          const err = new api.ApiError(status, { detail: status === 403 ? 'you are not active staff of this clinic' : 'your sign-in expired' });
          if (first) reject(err); else { api.clearToken(); signInPage(`Signed out: ${err.message}`); }
        }
      },
    });
  });
  await refreshAll();
  // The lists are out before this: someone quick may have opened a chat already.
  if (S.view === 'loading') renderMain();
}

async function refreshAll() {
  const [list, unread] = await Promise.all([
    api.get(`/v1/conversations?limit=${PAGE}`),
    api.get('/v1/unread'),
  ]);
  S.convs = new Map();
  for (const c of list.conversations) upsert(c);
  S.allCursor = list.next_cursor || null;
  applyUnread(unread);
  if (!S.me.name) {
    // The API has no "who am I": the name comes from a chat we are in, when there is one.
    const any = list.conversations[0];
    if (any) {
      const d = await api.get(`/v1/conversations/${encodeURIComponent(any.id)}`);
      learnNames(d.participants);
      if (S.names.get(S.me.id)) S.me.name = S.names.get(S.me.id);
    }
  }
  renderHeader();
  renderLists();
  loadUrgent();
  if (S.chat) reloadChat().catch(showError);
}

function upsert(c) {
  learnNames(c.participants);
  if (c.archived) S.convs.delete(c.id);
  else S.convs.set(c.id, c);
}

function sortedConvs() {
  return [...S.convs.values()].sort((a, b) => (b.last_activity_at || '').localeCompare(a.last_activity_at || ''));
}

function applyUnread(u) {
  S.unreadTotal = u.total;
  const counts = new Map(u.conversations.map((c) => [c.id, c]));
  for (const c of S.convs.values()) {
    const x = counts.get(c.id);
    c.unread_count = x ? x.unread_count : 0;
    if (x) c.muted = x.muted;
  }
  document.title = S.unreadTotal ? `(${S.unreadTotal}) Huddle` : 'Huddle';
}

function renderShell() {
  replace(app,
    h('header', { class: 'top' },
      h('span', { class: 'brand' }, 'Huddle'),
      h('div', { class: 'me' },
        h('span', { id: 'me-name' }),
        h('button', {
          type: 'button', id: 'chats-button', class: 'icon-button chats-button', 'aria-label': 'Chats',
          'aria-expanded': 'false', 'aria-controls': 'chats-dropdown', 'aria-describedby': 'unread-total',
          onclick: () => toggleDropdown(),
        }, icon('chat'), h('span', { id: 'unread-total', class: 'badge', hidden: true })),
        h('button', { type: 'button', class: 'link', onclick: signOut }, 'Sign out')),
      h('div', {
        id: 'chats-dropdown', class: 'dropdown', role: 'region', 'aria-label': 'Recent chats', hidden: true,
        onkeydown: (e) => { if (e.key === 'Escape') { toggleDropdown(false); document.getElementById('chats-button').focus(); } },
      },
      h('ul', { id: 'recent', class: 'chat-list' }),
      h('div', { class: 'dropdown-actions' },
        h('button', { type: 'button', onclick: () => { toggleDropdown(false); showAll(); } }, 'See All Chats'),
        h('button', { type: 'button', class: 'primary', onclick: () => { toggleDropdown(false); showNewChat(); } }, 'New Chat')))),
    h('div', { id: 'error', role: 'alert' }),
    h('section', { id: 'urgent', class: 'urgent-bar', 'aria-labelledby': 'urgent-h', hidden: true }),
    h('main', { id: 'main', tabindex: '-1' }),
    h('div', { id: 'popups', class: 'popups' }));
  document.addEventListener('click', (e) => {
    const dd = document.getElementById('chats-dropdown');
    const btn = document.getElementById('chats-button');
    if (dd && !dd.hidden && !dd.contains(e.target) && !btn.contains(e.target)) toggleDropdown(false);
  });
  // Browsers only play sound after a gesture: wake the audio on the first one.
  document.addEventListener('pointerdown', wakeAudio, { once: true });
  document.addEventListener('keydown', wakeAudio, { once: true });
}

function toggleDropdown(open) {
  const dd = document.getElementById('chats-dropdown');
  const btn = document.getElementById('chats-button');
  const show = open === undefined ? dd.hidden : open;
  dd.hidden = !show;
  btn.setAttribute('aria-expanded', String(show));
  if (show) {
    renderLists();
    const first = dd.querySelector('button');
    if (first) first.focus();
  }
}

function renderHeader() {
  const el = document.getElementById('me-name');
  if (el) el.textContent = S.me.name || S.me.id;
  const badge = document.getElementById('unread-total');
  if (badge) {
    badge.hidden = !S.unreadTotal;
    badge.textContent = S.unreadTotal ? `${S.unreadTotal} unread` : '';
  }
}

// chatRow is one chat in a list: its title is the button (UI.md: a chat is found by its
// title), with the unread badge and the Muted mark beside it so they do not change its name.
function chatRow(c, where) {
  const title = titleOf(c);
  const preview = c.last_message ? c.last_message.preview : '';
  return h('li', { class: `chat-row${c.unread_count ? ' unread' : ''}` },
    h('button', {
      type: 'button', class: 'chat-open', 'data-focus': `${where}-${c.id}`,
      onclick: () => { toggleDropdown(false); openChat(c.id); },
    }, title),
    h('span', { class: 'preview' }, c.membership !== 'active' ? 'You left this group' : preview),
    h('span', { class: 'marks' },
      c.muted ? h('span', { class: 'muted-mark', role: 'img', 'aria-label': 'Muted', title: 'Muted' }, icon('bell_off')) : null,
      c.unread_count ? h('span', { class: 'badge' }, h('span', { class: 'sr-only' }, 'unread: '), String(c.unread_count)) : null));
}

function renderLists() {
  const all = sortedConvs();
  const recent = document.getElementById('recent');
  if (recent) {
    replace(recent, all.length
      ? all.slice(0, RECENT).map((c) => chatRow(c, 'recent'))
      : h('li', { class: 'empty' }, 'No chats yet: start one with New Chat.'));
  }
  const full = document.getElementById('all-chats');
  if (full) replace(full, all.map((c) => chatRow(c, 'all')));
  const more = document.getElementById('more-chats');
  if (more) more.hidden = !S.allCursor;
  renderHeader();
}

function setView(name, ...content) {
  if (S.chat && name !== 'chat') S.chat = null;
  S.view = name;
  const main = document.getElementById('main');
  replace(main, ...content);
  const heading = main.querySelector('h1, h2');
  if (heading) { heading.tabIndex = -1; heading.focus(); }
}

function renderMain() {
  setView('home', h('section', { class: 'home', 'aria-labelledby': 'home-h' },
    h('h1', { id: 'home-h' }, `Welcome${S.me.name ? `, ${S.me.name}` : ''}`),
    h('p', {}, 'Open your chats with the chat bubble next to your name, or start one:'),
    h('div', { class: 'row' },
      h('button', { type: 'button', onclick: showAll }, 'See All Chats'),
      h('button', { type: 'button', class: 'primary', onclick: showNewChat }, 'New Chat'))));
}

// ---------------------------------------------------------------- See All Chats

function showAll() {
  setView('all', h('section', { class: 'all', 'aria-labelledby': 'all-h' },
    h('h1', { id: 'all-h' }, 'All chats'),
    h('ul', { id: 'all-chats', class: 'chat-list' }),
    h('button', { type: 'button', id: 'more-chats', onclick: loadMoreChats }, 'Load more chats')));
  renderLists();
}

async function loadMoreChats() {
  if (!S.allCursor) return;
  try {
    const page = await api.get(`/v1/conversations?limit=${PAGE}&cursor=${encodeURIComponent(S.allCursor)}`);
    for (const c of page.conversations) upsert(c);
    S.allCursor = page.next_cursor || null;
    renderLists();
  } catch (err) { showError(err); }
}

// ---------------------------------------------------------------- address-book search

// contactSearch is the "Search contacts" box of New Chat and of the participants panel:
// results as you type (debounced; a stale answer never overwrites a newer one), "No result"
// when nothing matches.
function contactSearch({ id, onResults, extra }) {
  const input = h('input', { id, type: 'search', autocomplete: 'off', 'aria-describedby': `${id}-hint` });
  let seq = 0;
  let timer = 0;
  const run = async () => {
    const q = input.value.trim();
    const mine = ++seq;
    try {
      const [contacts, more] = await Promise.all([
        api.get(`/v1/contacts?limit=20&q=${encodeURIComponent(q)}`),
        extra && q ? extra(q) : Promise.resolve([]),
      ]);
      if (mine !== seq) return;
      learnNames(contacts.contacts);
      onResults(q, contacts.contacts, more);
    } catch (err) { if (mine === seq) showError(err); }
  };
  input.addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(run, 150); });
  return {
    input,
    run,
    field: h('div', { class: 'search' },
      h('label', { for: id }, 'Search contacts'), input,
      h('p', { id: `${id}-hint`, class: 'hint' }, 'Type a name or an email address.')),
  };
}

// ---------------------------------------------------------------- New Chat

function showNewChat() {
  const results = h('div', { id: 'new-results', 'aria-live': 'polite' });
  const selected = new Map(); // group members picked so far
  const groupBox = h('input', { type: 'checkbox', id: 'group-toggle' });
  const groupName = h('input', { id: 'group-name', autocomplete: 'off', 'aria-describedby': 'group-name-hint' });
  const chips = h('ul', { class: 'chips', 'aria-label': 'People in the new group' });
  const groupFields = h('div', { class: 'group-fields', hidden: true },
    h('label', { for: 'group-name' }, 'Group name'), groupName,
    h('p', { id: 'group-name-hint', class: 'hint' }, 'Optional: a group without a name shows its members\' names.'), chips,
    h('button', { type: 'button', class: 'primary', onclick: createGroup }, 'Create group'));
  groupBox.addEventListener('change', () => { groupFields.hidden = !groupBox.checked; });

  function renderChips() {
    replace(chips, [...selected].map(([id, name]) => h('li', {}, name,
      h('button', { type: 'button', class: 'icon-button', 'aria-label': `Remove ${name}`, onclick: () => { selected.delete(id); renderChips(); } }, icon('close')))));
  }

  async function createGroup() {
    if (selected.size === 0) return showError('Pick at least one person for the group.');
    try {
      const body = { participant_ids: [...selected.keys()] };
      if (groupName.value.trim()) body.title = groupName.value.trim();
      const c = await api.call('POST', '/v1/conversations', body);
      upsert(c);
      renderLists();
      openChat(c.id);
    } catch (err) { showError(err); }
  }

  async function pick(person) {
    if (groupBox.checked) {
      selected.set(person.id, person.name);
      renderChips();
      announce(`${person.name} will be in the group`);
      return;
    }
    try {
      // The direct chat: new (201) or the existing one, which this also brings back from the
      // archive.
      const c = await api.call('POST', '/v1/conversations', { participant_ids: [person.id] });
      upsert(c);
      renderLists();
      openChat(c.id);
    } catch (err) { showError(err); }
  }

  async function unarchive(c) {
    try {
      await api.call('DELETE', `/v1/conversations/${encodeURIComponent(c.id)}/archive`);
      upsert({ ...c, archived: false });
      renderLists();
      openChat(c.id);
    } catch (err) { showError(err); }
  }

  const search = contactSearch({
    id: 'new-chat-search',
    // Archived chats come back through New Chat (the article): search them by title too.
    extra: async (q) => (await api.get(`/v1/conversations?archived=true&limit=10&q=${encodeURIComponent(q)}`)).conversations,
    onResults: (q, people, archived) => {
      if (people.length === 0 && archived.length === 0) {
        replace(results, q ? h('p', { class: 'no-result' }, 'No result') : h('p', {}, 'No one is in your address book yet.'));
        return;
      }
      replace(results,
        people.length ? h('ul', { class: 'results', 'aria-label': 'Contacts' }, people.map((p) => h('li', {},
          h('button', { type: 'button', class: 'person', 'data-focus': `p-${p.id}`, onclick: () => pick(p) }, p.name),
          h('span', { class: 'email' }, p.email + (p.title ? ` · ${p.title}` : ''))))) : null,
        archived.length ? [h('h3', {}, 'Archived chats'), h('ul', { class: 'results', 'aria-label': 'Archived chats' },
          archived.map((c) => h('li', {}, h('button', { type: 'button', class: 'person', onclick: () => unarchive(c) }, titleOf(c)))))] : null);
    },
  });

  setView('new', h('section', { class: 'new-chat', 'aria-labelledby': 'new-h' },
    h('h1', { id: 'new-h' }, 'New Chat'),
    search.field,
    h('div', { class: 'group-toggle' }, groupBox, h('label', { for: 'group-toggle' }, 'Group chat')),
    groupFields,
    results));
  search.input.focus();
  search.run();
}

// ---------------------------------------------------------------- a chat

// openChat opens a chat; with ackFor (an urgent message's id) the focus goes to that
// message's Acknowledge button once the history is in.
async function openChat(id, ackFor) {
  S.chat = {
    id, summary: S.convs.get(id) || null, detail: null, messages: new Map(), cursor: undefined, loading: false,
    editing: false, pendingRemove: null, addPick: null, editingId: null, receipts: new Map(),
  };
  closePopup(id);
  setView('chat', h('section', { class: 'chat', 'aria-labelledby': 'chat-title' },
    h('header', { class: 'chat-head' },
      h('h1', { id: 'chat-title' }, S.chat.summary ? titleOf(S.chat.summary) : 'Chat'),
      h('span', { id: 'chat-marks' }),
      h('div', { class: 'menu-wrap', id: 'chat-menu' })),
    h('div', { class: 'chat-body' },
      h('div', { class: 'history' },
        h('button', { type: 'button', id: 'earlier', class: 'link', hidden: true, onclick: loadOlder }, 'Load earlier messages'),
        h('ol', { id: 'messages', class: 'messages', role: 'log', 'aria-label': 'Messages', tabindex: '0', onscroll: onHistoryScroll })),
      h('aside', { id: 'participants', class: 'participants', 'aria-label': 'Participants' })),
    h('div', { id: 'composer', class: 'composer' })));
  S.chat.id = id;
  const chat = S.chat;
  try {
    await reloadChat();
    const ack = ackFor && S.chat === chat && document.querySelector(`[data-focus="${CSS.escape(`ack-${ackFor}`)}"]`);
    if (ack) { ack.scrollIntoView({ block: 'center' }); ack.focus(); }
  } catch (err) {
    showError(err);
    if (err.status === 404) { S.convs.delete(id); renderLists(); renderMain(); }
  }
}

async function reloadChat() {
  const chat = S.chat;
  const [detail, page] = await Promise.all([
    api.get(`/v1/conversations/${encodeURIComponent(chat.id)}`),
    api.get(`/v1/conversations/${encodeURIComponent(chat.id)}/messages?limit=${HISTORY}`),
  ]);
  if (S.chat !== chat) return;
  chat.detail = detail;
  chat.summary = detail;
  learnNames(detail.participants);
  if (!S.me.name && S.names.get(S.me.id)) { S.me.name = S.names.get(S.me.id); renderHeader(); }
  if (!detail.archived) S.convs.set(detail.id, { ...(S.convs.get(detail.id) || {}), ...detail, participants: detail.participants });
  chat.messages = new Map();
  chat.editingId = null;
  chat.cursor = page.next_cursor || null;
  renderChatHead();
  renderParticipants();
  renderComposer();
  const list = document.getElementById('messages');
  replace(list);
  addMessages(page.messages, 'end');
  // The read models may not hold what the stream already brought (another person's write
  // carries no position to wait for): add those live messages newer than the page.
  const last = page.messages.length ? Date.parse(page.messages[page.messages.length - 1].sent_at) : 0;
  addMessages((S.live.get(chat.id) || []).filter((m) => Date.parse(m.sent_at) >= last), 'end');
  list.scrollTop = list.scrollHeight;
  document.getElementById('earlier').hidden = !chat.cursor;
  markRead();
  fillHistory();
  if (detail.membership === 'active') loadReceipts(chat); // receipts are for members
}

// shape is what the chat's header, panel and composer show; a change of it (not a new
// message, which changes only previews and counts) re-renders them.
function shape(c) {
  const people = (c.participants || []).filter((p) => !p.state || p.state === 'active').map((p) => p.id).sort();
  return JSON.stringify([c.title, c.owner_id, c.membership, c.can_send, c.muted, c.archived, people]);
}

// refreshChatMeta follows a `conversation` event for the open chat without reloading its
// history (that would throw away the older pages the reader scrolled up to).
async function refreshChatMeta(summary) {
  const chat = S.chat;
  const before = shape(chat.summary);
  chat.summary = { ...chat.summary, ...summary };
  if (shape(chat.summary) === before) return;
  const detail = await api.get(`/v1/conversations/${encodeURIComponent(chat.id)}`);
  if (S.chat !== chat) return;
  const people = shape(chat.detail);
  chat.detail = detail;
  chat.summary = detail;
  learnNames(detail.participants);
  renderChatHead();
  renderComposer();
  if (shape(detail) !== people) renderParticipants();
}

function renderChatHead() {
  const c = S.chat.summary;
  document.getElementById('chat-title').textContent = titleOf(c);
  replace(document.getElementById('chat-marks'),
    c.muted ? h('span', { class: 'muted-mark', role: 'img', 'aria-label': 'Muted', title: 'Muted' }, icon('bell_off')) : null);
  renderMenu();
}

// renderMenu is the chat's ellipsis menu.
function renderMenu() {
  const c = S.chat.summary;
  const isGroup = c.kind === 'group';
  const active = c.membership === 'active';
  const items = [
    [c.muted ? 'Unmute Notifications' : 'Mute Notifications', toggleMute],
    [c.archived ? 'Unarchive chat' : 'Archive chat', toggleArchive],
    isGroup && active ? ['Rename group', renameGroup] : null,
    isGroup && active ? ['Leave group', confirmLeave] : null,
    isGroup && active && c.owner_id === S.me.id ? ['Delete group', confirmDelete] : null,
  ].filter(Boolean);
  replace(document.getElementById('chat-menu'), menuButton('chat-options', 'Chat options', items));
}

// menuButton is an ellipsis button with its menu (WAI-ARIA menu button: arrows move, Escape
// closes and returns to the button); items are [label, action] pairs.
function menuButton(id, label, items) {
  const button = h('button', {
    type: 'button', class: 'icon-button', id, 'aria-label': label, 'data-focus': id,
    'aria-haspopup': 'menu', 'aria-expanded': 'false', 'aria-controls': `${id}-menu`,
  }, icon('dots'));
  const menu = h('ul', { id: `${id}-menu`, role: 'menu', 'aria-label': label, class: 'menu', hidden: true },
    items.map(([label, fn]) => h('li', { role: 'none' },
      h('button', { type: 'button', role: 'menuitem', tabindex: '-1', onclick: () => { close(); fn(); } }, label))));
  const entries = () => [...menu.querySelectorAll('[role=menuitem]')];
  function open() {
    menu.hidden = false;
    // In a scrolling history, open upward when the menu would run past the bottom.
    const box = button.closest('.messages');
    if (box) {
      const b = button.getBoundingClientRect();
      const area = box.getBoundingClientRect();
      menu.classList.toggle('up', b.bottom + menu.offsetHeight > area.bottom && b.top - menu.offsetHeight > area.top);
    }
    button.setAttribute('aria-expanded', 'true');
    entries()[0].focus();
  }
  function close(refocus) {
    menu.hidden = true;
    button.setAttribute('aria-expanded', 'false');
    if (refocus) button.focus();
  }
  button.addEventListener('click', () => (menu.hidden ? open() : close()));
  button.addEventListener('keydown', (e) => { if (e.key === 'ArrowDown') { e.preventDefault(); open(); } });
  menu.addEventListener('keydown', (e) => {
    const list = entries();
    const i = list.indexOf(document.activeElement);
    if (e.key === 'ArrowDown') list[(i + 1) % list.length].focus();
    else if (e.key === 'ArrowUp') list[(i - 1 + list.length) % list.length].focus();
    else if (e.key === 'Home') list[0].focus();
    else if (e.key === 'End') list[list.length - 1].focus();
    else if (e.key === 'Escape' || e.key === 'Tab') { close(e.key === 'Escape'); return; } else return;
    e.preventDefault();
  });
  menu.addEventListener('focusout', (e) => { if (!menu.contains(e.relatedTarget) && e.relatedTarget !== button) close(); });
  return [button, menu];
}

const convPath = () => `/v1/conversations/${encodeURIComponent(S.chat.id)}`;

async function toggleMute() {
  const c = S.chat.summary;
  try {
    await api.call(c.muted ? 'DELETE' : 'PUT', `${convPath()}/mute`);
    c.muted = !c.muted;
    const listed = S.convs.get(c.id);
    if (listed) listed.muted = c.muted;
    renderChatHead();
    renderLists();
    announce(c.muted ? 'Notifications muted' : 'Notifications on');
    document.getElementById('chat-options').focus();
  } catch (err) { showError(err); }
}

async function toggleArchive() {
  const c = S.chat.summary;
  try {
    await api.call(c.archived ? 'DELETE' : 'PUT', `${convPath()}/archive`);
    if (c.archived) {
      c.archived = false;
      upsert(c);
      renderChatHead();
    } else {
      S.convs.delete(c.id);
      announce('Chat archived. New Chat finds it again.');
      renderMain();
    }
    renderLists();
  } catch (err) { showError(err); }
}

// confirmDialog is a modal <dialog>: it keeps focus inside, Escape cancels, and focus returns
// to the options button (back: its id) afterwards.
function confirmDialog(title, text, action, back = 'chat-options') {
  return new Promise((resolve) => {
    const dlg = h('dialog', { class: 'confirm', 'aria-labelledby': 'confirm-h', 'aria-describedby': 'confirm-p' },
      h('h2', { id: 'confirm-h' }, title),
      h('p', { id: 'confirm-p' }, text),
      h('div', { class: 'row' },
        h('button', { type: 'button', onclick: () => dlg.close('cancel') }, 'Cancel'),
        h('button', { type: 'button', class: 'danger', onclick: () => dlg.close('ok') }, action)));
    dlg.addEventListener('close', () => {
      dlg.remove();
      const to = document.getElementById(back) || document.getElementById('messages');
      if (to) to.focus();
      resolve(dlg.returnValue === 'ok');
    });
    document.body.append(dlg);
    dlg.showModal();
  });
}

// renameGroup asks for the group's new name in a modal dialog (any active member may rename;
// the history records it).
function renameGroup() {
  const chat = S.chat;
  const input = h('input', { id: 'rename-input', value: titleOf(chat.summary), autocomplete: 'off' });
  const problem = h('p', { role: 'alert', class: 'problem' });
  const dlg = h('dialog', { class: 'confirm', 'aria-labelledby': 'rename-h' });
  const save = async (e) => {
    e.preventDefault();
    const title = input.value.trim();
    if (!title) { problem.textContent = 'Type a name.'; return; }
    try {
      const summary = await api.call('PATCH', `/v1/conversations/${encodeURIComponent(chat.id)}`, { title });
      dlg.close();
      upsert(summary);
      if (S.chat === chat) { chat.summary = { ...chat.summary, ...summary }; renderChatHead(); }
      renderLists();
      announce(`Group renamed ${title}`);
    } catch (err) { problem.textContent = err.message; }
  };
  replace(dlg,
    h('h2', { id: 'rename-h' }, 'Rename group'),
    h('form', { class: 'rename-form', onsubmit: save },
      h('label', { for: 'rename-input' }, 'Group name'), input, problem,
      h('div', { class: 'row' },
        h('button', { type: 'button', onclick: () => dlg.close() }, 'Cancel'),
        h('button', { type: 'submit', class: 'primary' }, 'Save'))));
  dlg.addEventListener('close', () => { dlg.remove(); focusOn('chat-options'); });
  document.body.append(dlg);
  dlg.showModal();
  input.select();
}

async function confirmLeave() {
  if (!await confirmDialog('Leave this group?', 'You will not receive new messages from this group until someone adds you back.', 'Leave')) return;
  try {
    await api.call('POST', `${convPath()}/leave`);
    await reloadChat();
    announce('You left the group');
  } catch (err) { showError(err); }
}

async function confirmDelete() {
  if (!await confirmDialog('Delete this group?', 'The group disappears from every member\'s chat list.', 'Delete')) return;
  try {
    const id = S.chat.id;
    await api.call('DELETE', convPath());
    S.convs.delete(id);
    renderLists();
    renderMain();
    announce('Group deleted');
  } catch (err) { showError(err); }
}

// ---------------------------------------------------------------- history

function systemText(m) {
  const s = m.system || {};
  const who = (id) => (id === S.me.id ? 'You' : nameOf(id));
  const whom = (id) => (id === S.me.id ? 'you' : nameOf(id));
  switch (s.event) {
    case 'participant_left': return s.actor_id === S.me.id ? 'You left the group' : `${nameOf(s.actor_id)} left the group`;
    case 'participant_added': return `${who(s.actor_id)} added ${whom(s.subject_id)}`;
    case 'participant_removed': return `${who(s.actor_id)} removed ${whom(s.subject_id)}`;
    case 'group_renamed': return `${who(s.actor_id)} renamed the group`;
    case 'ownership_passed': return s.subject_id === S.me.id ? 'You are now the owner' : `${nameOf(s.subject_id)} is now the owner`;
    default: return m.text || 'The group changed';
  }
}

function formatSize(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1 << 20) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / (1 << 20)).toFixed(1)} MB`;
}

const clock = (t) => new Date(t).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });

// messageItem is one message of the history. An urgent one says so in words (not by colour
// alone) and carries its acknowledgements; the reader's own messages have an options menu.
function messageItem(m) {
  if (m.kind === 'system') return h('li', { class: 'msg system', 'data-id': m.id }, systemText(m));
  const mine = m.sender_id === S.me.id;
  const urgent = m.priority === 'urgent';
  let body;
  if (m.recalled) body = h('p', { class: 'text recalled' }, 'Message recalled');
  else if (S.chat && S.chat.editingId === m.id) body = messageEditor(m);
  else if (m.kind === 'file' && m.file) {
    body = h('p', { class: 'text' }, h('button', {
      type: 'button', class: 'file-link',
      onclick: () => api.download(m.file).catch(showError),
    }, `Download ${m.file.name}`), ` (${formatSize(m.file.size)})`);
  } else body = h('p', { class: 'text' }, m.text);
  // An article each, so a screen reader can move from message to message.
  return h('li', { class: `msg ${mine ? 'mine' : 'theirs'}${urgent ? ' urgent' : ''}`, role: 'article', 'data-id': m.id },
    h('div', { class: 'meta' },
      urgent ? h('strong', { class: 'urgent-mark' }, 'Urgent') : null,
      h('span', { class: 'who' }, mine ? 'You' : nameOf(m.sender_id)),
      h('time', { datetime: m.sent_at }, clock(m.sent_at)),
      m.edited_at && !m.recalled ? h('span', { class: 'edited', title: `Edited at ${clock(m.edited_at)}` }, '(edited)') : null,
      messageMenu(m)),
    body,
    urgent ? ackLine(m) : null);
}

// updateMessage shows a changed message (edited, recalled, acknowledged) in place.
function updateMessage(m) {
  const live = S.live.get(m.conversation_id || (S.chat && S.chat.id));
  if (live) {
    const i = live.findIndex((x) => x.id === m.id);
    if (i >= 0) live[i] = { ...live[i], ...m };
  }
  if (!S.chat || !S.chat.messages.has(m.id)) return;
  S.chat.messages.set(m.id, m);
  // The item stays (a screen reader's place in the log, the focus when it has it); what is in
  // it changes.
  const item = document.querySelector(`#messages [data-id="${CSS.escape(m.id)}"]`);
  if (item) {
    const fresh = messageItem(m);
    item.className = fresh.className;
    replace(item, ...fresh.childNodes);
  }
  renderReceipts();
}

// addMessages puts messages at the end (new) or the start (older pages), skipping ones already
// shown (a message can arrive on the stream and in a page).
function addMessages(msgs, where) {
  const list = document.getElementById('messages');
  const fresh = msgs.filter((m) => !S.chat.messages.has(m.id));
  for (const m of fresh) S.chat.messages.set(m.id, m);
  const items = fresh.map(messageItem);
  if (where === 'start') list.prepend(...items);
  else list.append(...items);
  if (fresh.length) renderReceipts();
}

async function loadOlder() {
  const chat = S.chat;
  if (!chat || !chat.cursor || chat.loading) return;
  chat.loading = true;
  const list = document.getElementById('messages');
  try {
    const page = await api.get(`${convPath()}/messages?limit=${HISTORY}&before=${encodeURIComponent(chat.cursor)}`);
    if (S.chat !== chat) return;
    // Keep the message the reader was looking at in place while older ones go in above it.
    const fromBottom = list.scrollHeight - list.scrollTop;
    addMessages(page.messages, 'start');
    list.scrollTop = list.scrollHeight - fromBottom;
    chat.cursor = page.next_cursor || null;
    document.getElementById('earlier').hidden = !chat.cursor;
  } catch (err) { showError(err); } finally { chat.loading = false; }
  fillHistory();
}

// Infinite scroll upward: near the top, fetch the page before.
function onHistoryScroll(e) {
  if (e.target.scrollTop < 60) loadOlder();
}

// fillHistory loads older pages while the history does not fill its box (no scrollbar means
// no scroll event to ask for more).
function fillHistory() {
  const list = document.getElementById('messages');
  if (S.chat && S.chat.cursor && list && list.scrollHeight <= list.clientHeight) loadOlder();
}

// markRead marks the open chat read while the page is in view. A message that just arrived
// forces it: its unread count comes on a later event, so the list may still say 0.
function markRead(force) {
  if (!S.chat || document.hidden) return;
  const c = S.convs.get(S.chat.id);
  if (!force && c && !c.unread_count) return;
  api.call('POST', `${convPath()}/read`, {}).catch(() => {});
}

document.addEventListener('visibilitychange', () => { if (!document.hidden) markRead(); });

// ---------------------------------------------------------------- clinical messaging

const msgPath = (convId, msgId) => `/v1/conversations/${encodeURIComponent(convId)}/messages/${encodeURIComponent(msgId)}`;

// activeOthers are the open chat's active members other than userId: whom a new urgent
// message waits for.
function activeOthers(userId) {
  const d = S.chat && S.chat.detail;
  return d ? d.participants.filter((p) => (!p.state || p.state === 'active') && p.id !== userId).map((p) => p.id) : [];
}

// waitingForMe: an urgent message that still waits for my acknowledgement. The message's
// acks say so; a message that came without them (an older server's stream) counts when it is
// on my urgent list.
function waitingForMe(m) {
  if (m.priority !== 'urgent' || m.sender_id === S.me.id) return false;
  if (m.acks) return (m.acks.pending || []).includes(S.me.id);
  return S.urgent.some((u) => u.id === m.id);
}

const names = (ids) => ids.map(nameOf).sort((a, b) => a.localeCompare(b)).join(', ');

// ackLine is what an urgent message says about its acknowledgements: the button for a
// recipient it waits for; who has acknowledged and who has not for its sender.
function ackLine(m) {
  if (waitingForMe(m)) {
    return h('div', { class: 'ack' }, h('button', {
      type: 'button', class: 'danger', 'data-focus': `ack-${m.id}`,
      onclick: () => acknowledge(m.conversation_id || S.chat.id, m),
    }, 'Acknowledge'));
  }
  const acks = m.acks;
  if (m.sender_id !== S.me.id) {
    return acks && (acks.acked || []).some((a) => a.user_id === S.me.id) ? h('p', { class: 'ack' }, 'You acknowledged') : null;
  }
  if (!acks) return h('p', { class: 'ack' }, 'Waiting for acknowledgement');
  const acked = (acks.acked || []).map((a) => a.user_id);
  const pending = acks.pending || [];
  return h('p', { class: 'ack' },
    acked.length ? h('span', { class: 'acked' }, `Acknowledged by ${names(acked)}`) : null,
    pending.length ? h('span', { class: 'pending' }, `Waiting for ${names(pending)}`) : null,
    !acked.length && !pending.length ? h('span', {}, 'No one to acknowledge it') : null);
}

async function acknowledge(convId, m) {
  try {
    await api.call('POST', `${msgPath(convId, m.id)}/ack`);
  } catch (err) {
    showError(err);
    return;
  }
  const now = new Date().toISOString();
  const acks = m.acks || { acked: [], pending: [S.me.id] };
  S.urgent = S.urgent.filter((u) => u.id !== m.id);
  S.reminded.delete(m.id);
  renderUrgent();
  const shown = S.chat && S.chat.messages.get(m.id);
  if (shown) {
    updateMessage({ ...shown, acks: { acked: [...acks.acked, { user_id: S.me.id, at: now }], pending: acks.pending.filter((id) => id !== S.me.id) } });
    document.getElementById('messages').focus(); // the button is gone
  }
  announce(`Acknowledged the urgent message from ${nameOf(m.sender_id)}`);
}

// applyAck follows an `ack` event (only a message's sender gets them): someone acknowledged
// my urgent message. It is said wherever I am; the open chat shows it on the message.
function applyAck(a) {
  const c = S.convs.get(a.conversation_id);
  announce(`${nameOf(a.user_id)} acknowledged your urgent message${c ? ` in ${titleOf(c)}` : ''}`);
  if (!S.chat || S.chat.id !== a.conversation_id) return;
  const m = S.chat.messages.get(a.message_id);
  if (!m) return;
  const acks = m.acks || { acked: [], pending: activeOthers(m.sender_id) };
  if ((acks.acked || []).some((x) => x.user_id === a.user_id)) return;
  updateMessage({ ...m, acks: { acked: [...(acks.acked || []), { user_id: a.user_id, at: a.at }], pending: (acks.pending || []).filter((id) => id !== a.user_id) } });
}

// messageMenu is the options menu of a message I may change: my own (edit, recall) or, for a
// group's owner, anyone's (recall).
function messageMenu(m) {
  if (m.recalled || !S.chat || !S.chat.summary) return null;
  const c = S.chat.summary;
  const mine = m.sender_id === S.me.id;
  const active = c.membership === 'active';
  const owner = c.kind === 'group' && c.owner_id === S.me.id;
  const items = [
    mine && active && m.kind === 'text' ? ['Edit message', () => startEdit(m.id)] : null,
    mine || owner ? ['Recall message', () => recallMessage(m)] : null,
  ].filter(Boolean);
  if (!items.length) return null;
  return h('span', { class: 'menu-wrap msg-menu' }, menuButton(`opts-${m.id}`, 'Message options', items));
}

function focusOn(id) {
  const el = document.getElementById(id) || document.getElementById('messages');
  if (el) el.focus();
}

function startEdit(id) {
  const m = S.chat.messages.get(id);
  if (!m) return;
  S.chat.editingId = id;
  updateMessage(m);
  const box = document.getElementById(`edit-${id}`);
  if (box) { box.focus(); box.setSelectionRange(box.value.length, box.value.length); }
}

function stopEdit(id) {
  if (!S.chat) return;
  S.chat.editingId = null;
  const m = S.chat.messages.get(id);
  if (m) updateMessage(m);
  focusOn(`opts-${id}`);
}

// messageEditor edits a message in place: Enter saves, Shift+Enter is a new line, Escape
// cancels.
function messageEditor(m) {
  const box = h('textarea', { id: `edit-${m.id}`, class: 'edit-box', rows: 2, 'aria-label': 'Edit message text', 'aria-describedby': `edit-hint-${m.id}`, value: m.text });
  const chat = S.chat;
  const save = async () => {
    const text = box.value.trim();
    if (!text) { showError('A message cannot be empty: recall it instead.'); return; }
    if (text === m.text) { stopEdit(m.id); return; }
    try {
      const edited = await api.call('PATCH', msgPath(chat.id, m.id), { text });
      if (S.chat !== chat) return;
      chat.editingId = null;
      updateMessage({ ...chat.messages.get(m.id), ...edited, text: edited.text ?? text });
      focusOn(`opts-${m.id}`);
      announce('Message edited');
    } catch (err) { showError(err); }
  };
  box.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); save(); }
    if (e.key === 'Escape') { e.preventDefault(); stopEdit(m.id); }
  });
  return h('form', { class: 'edit-form', onsubmit: (e) => { e.preventDefault(); save(); } },
    box,
    h('p', { id: `edit-hint-${m.id}`, class: 'hint' }, 'Enter saves, Escape cancels.'),
    h('div', { class: 'row' },
      h('button', { type: 'submit', class: 'primary' }, 'Save'),
      h('button', { type: 'button', onclick: () => stopEdit(m.id) }, 'Cancel')));
}

async function recallMessage(m) {
  if (!await confirmDialog('Recall this message?', 'Everyone in the chat sees "Message recalled" in its place. Auditors still see what was sent.', 'Recall', `opts-${m.id}`)) return;
  const chat = S.chat;
  try {
    await api.call('DELETE', msgPath(chat.id, m.id));
    if (S.chat !== chat) return;
    if (chat.editingId === m.id) chat.editingId = null;
    updateMessage({ ...chat.messages.get(m.id), recalled: true, text: '', file: undefined });
    focusOn('messages');
    announce('Message recalled');
  } catch (err) { showError(err); }
}

// applyUpdate follows a `message_updated` event (an edit or a recall). A message being edited
// here keeps its editor unless it was recalled.
function applyUpdate(m) {
  const i = S.urgent.findIndex((u) => u.id === m.id);
  if (i >= 0) { S.urgent[i] = { ...S.urgent[i], ...m }; renderUrgent(); }
  if (!S.chat || S.chat.id !== m.conversation_id || !S.chat.messages.has(m.id)) {
    updateMessage(m);
    return;
  }
  if (S.chat.editingId === m.id) {
    if (!m.recalled) { S.chat.messages.set(m.id, { ...S.chat.messages.get(m.id), ...m }); return; }
    S.chat.editingId = null;
  }
  updateMessage({ ...S.chat.messages.get(m.id), ...m });
}

// ---- receipts

async function loadReceipts(chat) {
  let r;
  try {
    r = await api.get(`/v1/conversations/${encodeURIComponent(chat.id)}/receipts`);
  } catch (err) {
    showError(err);
    return;
  }
  if (S.chat !== chat) return;
  chat.receipts = new Map(r.receipts.map((x) => [x.user_id, x]));
  renderReceipts();
}

// renderReceipts puts "Seen by" under my latest message: the members whose read marker is at
// it or past it.
function renderReceipts() {
  const chat = S.chat;
  const list = document.getElementById('messages');
  if (!chat || !list) return;
  for (const el of list.querySelectorAll('.receipts')) el.remove();
  const items = [...list.querySelectorAll(':scope > li[data-id]')];
  const index = new Map(items.map((li, i) => [li.dataset.id, i]));
  let at = items.length - 1;
  while (at >= 0 && !items[at].classList.contains('mine')) at--;
  if (at < 0) return;
  const seen = [];
  for (const r of chat.receipts.values()) {
    if (r.user_id === S.me.id || !r.last_read_message_id) continue;
    const i = index.get(r.last_read_message_id);
    if (i !== undefined && i >= at) seen.push(nameOf(r.user_id));
  }
  if (!seen.length) return;
  seen.sort((a, b) => a.localeCompare(b));
  items[at].append(h('p', { class: 'receipts' }, `Seen by ${seen.join(', ')}`));
}

function applyReceipt(r) {
  if (!S.chat || S.chat.id !== r.conversation_id) return;
  S.chat.receipts.set(r.user_id, r);
  renderReceipts();
}

// ---- urgent messages waiting for me

async function loadUrgent() {
  try {
    S.urgent = (await api.get('/v1/urgent')).messages;
  } catch (err) {
    showError(err); // what the stream brought stays listed
    return;
  }
  for (const id of S.reminded.keys()) if (!S.urgent.some((u) => u.id === id)) S.reminded.delete(id);
  renderUrgent();
  if (S.chat) for (const m of S.chat.messages.values()) if (m.priority === 'urgent' && !m.acks) updateMessage(m);
}

// renderUrgent is the bar above every page listing the urgent messages that wait for me,
// whatever mute and archive say, until I acknowledge each. Reminders only change counts, in
// place: rebuilding the list every interval would pull a button from under a click.
function renderUrgent() {
  const el = document.getElementById('urgent');
  if (!el) return;
  el.hidden = S.urgent.length === 0;
  const rows = S.urgent.map((m) => {
    const c = S.convs.get(m.conversation_id);
    const where = c && c.kind === 'group' ? ` in ${titleOf(c)}` : '';
    return { m, who: `${nameOf(m.sender_id)}${where}`, text: m.recalled ? 'Message recalled' : m.text || (m.file ? m.file.name : '') };
  });
  const key = JSON.stringify(rows.map((r) => [r.m.id, r.who, r.text]));
  const counts = () => {
    for (const { m } of rows) {
      const n = S.reminded.get(m.id);
      const span = document.getElementById(`urgent-count-${m.id}`);
      if (span) span.textContent = n ? ` · reminder ${n}` : '';
    }
  };
  if (el.dataset.key === key) { counts(); return; }
  el.dataset.key = key;
  if (!rows.length) { replace(el); return; }
  replace(el,
    h('div', { class: 'urgent-head' },
      h('h2', { id: 'urgent-h' }, 'Urgent messages waiting for you'),
      h('span', { class: 'badge' }, `${rows.length} waiting`)),
    h('ul', { class: 'urgent-list' }, rows.map(({ m, who, text }) => h('li', {},
      h('span', { id: `urgent-${m.id}` }, h('strong', {}, who), ` (${clock(m.sent_at)}): `, text,
        h('span', { id: `urgent-count-${m.id}` })),
      h('button', {
        type: 'button', class: 'link', 'data-focus': `urgent-open-${m.id}`, 'aria-describedby': `urgent-${m.id}`,
        onclick: () => openChat(m.conversation_id, m.id),
      }, 'Open chat')))));
  counts();
}

// onReminder: the server repeats an urgent message I have not acknowledged; say it again,
// through mute, and chime.
function onReminder(r) {
  window.huddle.reminders++;
  S.reminded.set(r.message_id, r.count);
  const m = S.urgent.find((u) => u.id === r.message_id);
  if (!m) loadUrgent();
  renderUrgent();
  const c = S.convs.get(r.conversation_id);
  const from = m ? ` from ${nameOf(m.sender_id)}` : '';
  announce(`Reminder: the urgent message${from}${c ? ` in ${titleOf(c)}` : ''} is waiting for your acknowledgement`);
  chime();
}

// ---------------------------------------------------------------- composer

function renderComposer() {
  const el = document.getElementById('composer');
  const c = S.chat.summary;
  if (!c.can_send) {
    replace(el, h('p', { class: 'cannot-send' }, 'You cannot send chat to this group'));
    return;
  }
  if (el.querySelector('textarea')) return; // keep what the user is typing
  const text = h('textarea', { id: 'message', rows: 1, 'aria-label': 'Message', placeholder: 'Type a message' });
  const progress = h('progress', { max: '100', value: '0', hidden: true, 'aria-label': 'Upload progress' });
  const file = h('input', { type: 'file', id: 'file', class: 'file-input', 'aria-label': 'Send a file' });
  // Urgent: the message reaches everyone even in a muted chat and waits for each of them to
  // acknowledge it. It applies to the next message only.
  const urgent = h('input', { type: 'checkbox', id: 'urgent-toggle', 'aria-describedby': 'urgent-hint' });
  const form = h('form', { class: 'compose-form', onsubmit: (e) => { e.preventDefault(); send(); } });
  urgent.addEventListener('change', () => form.classList.toggle('is-urgent', urgent.checked));
  const send = async () => {
    const body = text.value.trim();
    if (!body) return;
    const chat = S.chat;
    const priority = urgent.checked ? 'urgent' : 'normal';
    try {
      // A client_message_id makes a retry after a lost answer safe: the server keeps one.
      const m = await api.call('POST', `${convPath()}/messages`, { text: body, client_message_id: crypto.randomUUID(), priority });
      text.value = '';
      urgent.checked = false;
      form.classList.remove('is-urgent');
      if (priority === 'urgent' && !m.acks) m.acks = { acked: [], pending: activeOthers(S.me.id) };
      if (S.chat === chat) {
        // The stream may have brought it first: the answer is the message as sent.
        const shown = chat.messages.get(m.id);
        if (shown) updateMessage({ ...shown, ...m, acks: shown.acks || m.acks });
        else addMessages([m], 'end');
        scrollToEnd();
      }
    } catch (err) {
      showError(err);
      if (err.code === 'cannot_send') reloadChat().catch(() => {});
    }
  };
  text.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); send(); }
  });
  file.addEventListener('change', async () => {
    const f = file.files[0];
    if (!f) return;
    const chat = S.chat;
    progress.hidden = false;
    progress.value = 0;
    try {
      const m = await api.upload(chat.id, f, (p) => { progress.value = Math.round(p * 100); });
      progress.value = 100;
      announce(`${f.name} sent`);
      if (S.chat === chat) { addMessages([m], 'end'); scrollToEnd(); }
    } catch (err) { showError(err); } finally {
      progress.hidden = true;
      file.value = '';
    }
  });
  replace(form,
    h('label', { class: 'icon-button file-label' }, icon('clip'), file),
    text,
    h('label', { class: 'urgent-choice', title: 'Reaches everyone, even in a muted chat, until each acknowledges' }, urgent, 'Urgent'),
    h('button', { type: 'submit', class: 'primary' }, 'Send'));
  replace(el, form, progress,
    h('p', { id: 'urgent-hint', class: 'sr-only' }, 'An urgent message reaches everyone, even in a muted chat, and waits for each of them to acknowledge it.'));
}

function scrollToEnd() {
  const list = document.getElementById('messages');
  if (list) list.scrollTop = list.scrollHeight;
}

// ---------------------------------------------------------------- participants panel

function renderParticipants() {
  const chat = S.chat;
  const el = document.getElementById('participants');
  const d = chat.detail;
  const active = d.participants.filter((p) => !p.state || p.state === 'active');
  const canEdit = d.kind === 'group' && d.membership === 'active';
  const rows = active.map((p) => {
    const me = p.id === S.me.id;
    const owner = p.role === 'owner' || p.id === d.owner_id;
    const pending = chat.pendingRemove === p.id;
    return h('li', { class: pending ? 'pending' : '' },
      h('span', { class: 'name' }, me ? `${p.name} (you)` : p.name),
      owner ? h('span', { class: 'role' }, 'owner') : null,
      chat.editing && !me && !owner && !pending ? h('button', {
        type: 'button', class: 'icon-button', 'aria-label': `Remove ${p.name}`, 'data-focus': `rm-${p.id}`,
        onclick: () => { chat.pendingRemove = p.id; renderParticipants(); document.querySelector('[data-focus=confirm-rm]').focus(); },
      }, icon('minus')) : null,
      pending ? [
        h('button', { type: 'button', class: 'icon-button ok', 'aria-label': 'Confirm', 'data-focus': 'confirm-rm', onclick: () => removeParticipant(p) }, icon('check')),
        h('button', { type: 'button', class: 'link', onclick: () => { chat.pendingRemove = null; renderParticipants(); } }, 'Cancel'),
      ] : null);
  });
  const results = h('div', { id: 'add-results', 'aria-live': 'polite' });
  let search = null;
  if (chat.editing) {
    search = contactSearch({
      id: 'add-search',
      onResults: (q, people) => {
        const ids = new Set(active.map((p) => p.id));
        const fit = people.filter((p) => !ids.has(p.id));
        if (fit.length === 0) { replace(results, q ? h('p', { class: 'no-result' }, 'No result') : null); return; }
        replace(results, h('ul', { class: 'results', 'aria-label': 'Contacts' }, fit.map((p) => h('li', {},
          h('button', {
            type: 'button', class: 'person', 'aria-pressed': String(chat.addPick && chat.addPick.id === p.id), 'data-focus': `pick-${p.id}`,
            onclick: (e) => {
              chat.addPick = p;
              for (const b of results.querySelectorAll('[aria-pressed]')) b.setAttribute('aria-pressed', 'false');
              e.currentTarget.setAttribute('aria-pressed', 'true');
              addButton.disabled = false;
            },
          }, p.name)))));
      },
    });
  }
  const addButton = h('button', { type: 'button', class: 'primary', disabled: !chat.addPick, onclick: addParticipant }, 'Add');
  replace(el,
    h('div', { class: 'panel-head' },
      h('h2', { id: 'participants-h' }, 'Participants'),
      canEdit ? h('button', {
        type: 'button', class: 'icon-button', 'aria-label': chat.editing ? 'Done editing' : 'Edit participants', 'aria-pressed': String(chat.editing), 'data-focus': 'edit-p',
        onclick: () => {
          chat.editing = !chat.editing;
          chat.pendingRemove = null;
          chat.addPick = null;
          renderParticipants();
          const box = document.getElementById('add-search');
          (box || document.querySelector('[data-focus=edit-p]')).focus();
        },
      }, icon(chat.editing ? 'check' : 'pen')) : null),
    h('ul', { class: 'people-list' }, rows),
    chat.editing ? h('div', { class: 'add' }, search.field, results, addButton) : null);
  if (search) search.run();
}

async function addParticipant() {
  const chat = S.chat;
  const p = chat.addPick;
  if (!p) return;
  try {
    await api.call('POST', `${convPath()}/participants`, { user_id: p.id });
    chat.addPick = null;
    announce(`${p.name} added`);
    await reloadChatKeepEditing();
    const box = document.getElementById('add-search');
    if (box) box.focus(); // ready for the next person
  } catch (err) { showError(err); }
}

async function removeParticipant(p) {
  try {
    await api.call('DELETE', `${convPath()}/participants/${encodeURIComponent(p.id)}`);
    S.chat.pendingRemove = null;
    announce(`${p.name} removed`);
    await reloadChatKeepEditing();
    const edit = document.querySelector('[data-focus=edit-p]');
    if (edit) edit.focus(); // the removed row, and its buttons, are gone
  } catch (err) { showError(err); }
}

async function reloadChatKeepEditing() {
  const editing = S.chat.editing;
  await reloadChat();
  if (S.chat) { S.chat.editing = editing; renderParticipants(); }
}

// ---------------------------------------------------------------- live events

function onEvent(kind, data) {
  switch (kind) {
    case 'message': return onMessage(data);
    case 'conversation': {
      upsert(data);
      if (data.archived) S.convs.delete(data.id);
      renderLists();
      if (S.chat && S.chat.id === data.id) refreshChatMeta(data).catch(() => {});
      return;
    }
    case 'unread':
      applyUnread(data);
      renderLists();
      return;
    case 'removed': {
      S.convs.delete(data.conversation_id);
      closePopup(data.conversation_id);
      renderLists();
      if (S.chat && S.chat.id === data.conversation_id) {
        announce('This group was deleted');
        renderMain();
      }
      return;
    }
    case 'reset':
      refreshAll().catch(showError);
      return;
    case 'message_updated':
      applyUpdate(data);
      return;
    case 'ack':
      applyAck(data);
      return;
    case 'receipt':
      applyReceipt(data);
      return;
    case 'reminder':
      onReminder(data);
      return;
    default:
      return; // kinds this client does not show yet
  }
}

function onMessage(m) {
  const live = S.live.get(m.conversation_id) || [];
  live.push(m);
  S.live.set(m.conversation_id, live.slice(-LIVE));
  const open = S.chat && S.chat.id === m.conversation_id;
  if (open) {
    const list = document.getElementById('messages');
    const atEnd = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
    addMessages([m], 'end');
    if (atEnd || m.sender_id === S.me.id) scrollToEnd();
    if (m.sender_id !== S.me.id) markRead(true);
  }
  const urgent = m.priority === 'urgent';
  if (urgent && m.sender_id !== S.me.id && (!m.acks || m.acks.pending.includes(S.me.id)) && !S.urgent.some((u) => u.id === m.id)) {
    S.urgent.push(m);
    renderUrgent();
    if (open) updateMessage(S.chat.messages.get(m.id) || m); // its Acknowledge button
  }
  // notify is false for our own messages and in muted chats (API.md), but true for an urgent
  // message whatever mute says: no pop-up, no sound unless it is set. System lines (someone
  // added, left) are not news to chime about.
  if (!m.notify || m.kind === 'system') return;
  const c = S.convs.get(m.conversation_id);
  const title = c ? titleOf(c) : nameOf(m.sender_id);
  const text = (urgent ? 'Urgent: ' : '') + (m.kind === 'file' && m.file ? `sent ${m.file.name}` : m.text);
  // The open chat's history is a live log that screen readers read out already.
  if (!open) announce(`New message from ${nameOf(m.sender_id)} in ${title}: ${text}`);
  if (!open || document.hidden || urgent) chime();
  if (!open) popup(m.conversation_id, title, `${nameOf(m.sender_id)}: ${text}`);
}

// popup is the web chat box that pops up for a new message in a chat that is not open. It
// does not take focus (that would pull a keyboard user out of what they are doing); the
// status region speaks the message instead.
function popup(convId, title, line) {
  const box = document.getElementById('popups');
  if (!box) return;
  closePopup(convId);
  window.huddle.popups++;
  const el = h('section', { class: 'popup', role: 'dialog', 'aria-label': `New message in ${title}`, 'data-conv': convId },
    h('header', {}, h('h2', {}, title),
      h('button', { type: 'button', class: 'icon-button', 'aria-label': `Close ${title}`, onclick: () => el.remove() }, icon('close'))),
    h('p', {}, line),
    h('button', { type: 'button', class: 'primary', onclick: () => { el.remove(); openChat(convId); } }, 'Open chat'));
  box.append(el);
  while (box.children.length > 3) box.firstElementChild.remove();
}

function closePopup(convId) {
  for (const el of document.querySelectorAll('.popup')) if (el.dataset.conv === convId) el.remove();
}

let audio = null;
function wakeAudio() {
  try {
    audio = audio || new AudioContext();
    if (audio.state === 'suspended') audio.resume();
  } catch { audio = null; }
}

// chime plays a short two-note tone, made on the spot (no sound file to fetch or allow).
function chime() {
  wakeAudio();
  if (!audio) return;
  const now = audio.currentTime;
  for (const [freq, at] of [[880, 0], [1320, 0.12]]) {
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    osc.frequency.value = freq;
    gain.gain.setValueAtTime(0.0001, now + at);
    gain.gain.exponentialRampToValueAtTime(0.2, now + at + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, now + at + 0.25);
    osc.connect(gain).connect(audio.destination);
    osc.start(now + at);
    osc.stop(now + at + 0.3);
  }
  window.huddle.sounds++;
}

// An expired or revoked token: back to the sign-in page rather than a page of errors.
window.addEventListener('huddle:unauthorized', () => {
  if (S.stream) S.stream.close();
  S.stream = null;
  api.clearToken();
  signInPage('Your sign-in expired: sign in again.');
});

// A /#token= link opened in a tab already showing the client changes only the fragment (no
// page load): start over so it signs in as that token's user.
window.addEventListener('hashchange', () => {
  if (/(?:^#|&)token=/.test(location.hash)) location.reload();
});

boot().catch(showError);

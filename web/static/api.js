// The HTTP API of docs/API.md, as the signed-in user. Errors are problem+json: callers get an
// ApiError with the stable `code` to branch on and the `detail` to show.

const TOKEN_KEY = 'huddle.token';

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.code = problem.code || '';
  }
}

export function token() { return sessionStorage.getItem(TOKEN_KEY) || ''; }
export function setToken(t) { sessionStorage.setItem(TOKEN_KEY, t); }
export function clearToken() { sessionStorage.removeItem(TOKEN_KEY); }

// claims reads the token's payload without verifying it (the server verifies): the client only
// needs to know who it is signed in as.
export function claims(t = token()) {
  try {
    const part = t.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(decodeURIComponent(escape(atob(part))));
  } catch {
    return null;
  }
}

async function fail(res) {
  let problem = {};
  try { problem = await res.json(); } catch { /* not JSON: keep the status */ }
  return new ApiError(res.status, problem);
}

// Read-your-writes (API.md): every command answers with Huddle-Position; reads send the latest
// one back as Huddle-Min-Position, so a chat just created or a message just sent is there when
// the client reads it (the read models are applied asynchronously).
let position = '';
function remember(p) { if (p) position = p; }

export async function call(method, path, body) {
  const headers = { Authorization: `Bearer ${token()}` };
  if (method === 'GET' && position) headers['Huddle-Min-Position'] = position;
  const init = { method, headers, cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res = await fetch(path, init);
  // 429 rate_limited and 503 busy were not applied: wait as told and try again, twice at most
  // (a send carries a client_message_id, so a retry never doubles it).
  for (let i = 0; i < 2 && (res.status === 429 || res.status === 503); i++) {
    const after = Number(res.headers.get('Retry-After'));
    if (!(after > 0 && after <= 10)) break;
    await new Promise((r) => setTimeout(r, after * 1000));
    res = await fetch(path, init);
  }
  if (res.status === 401) window.dispatchEvent(new Event('huddle:unauthorized'));
  if (!res.ok) throw await fail(res);
  if (method !== 'GET') remember(res.headers.get('Huddle-Position'));
  if (res.status === 204) return null;
  const type = res.headers.get('Content-Type') || '';
  return type.includes('json') ? res.json() : res;
}

export const get = (path) => call('GET', path);

// upload posts a file as multipart with progress (fetch cannot report upload progress).
export function upload(convId, file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', `/v1/conversations/${encodeURIComponent(convId)}/files`);
    xhr.setRequestHeader('Authorization', `Bearer ${token()}`);
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); };
    xhr.onload = () => {
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch { /* keep empty */ }
      remember(xhr.getResponseHeader('Huddle-Position'));
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(new ApiError(xhr.status, body));
    };
    xhr.onerror = () => reject(new ApiError(0, { detail: 'the upload failed: network error' }));
    const form = new FormData();
    form.append('file', file);
    xhr.send(form);
  });
}

// download fetches a file with the bearer token (a plain link cannot send it) and hands it to
// the browser as a download under its own name.
export async function download(file) {
  const res = await fetch(`/v1/files/${encodeURIComponent(file.id)}`, {
    headers: { Authorization: `Bearer ${token()}` },
  });
  if (!res.ok) throw await fail(res);
  const url = URL.createObjectURL(await res.blob());
  const a = document.createElement('a');
  a.href = url;
  a.download = file.name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

// Dev sign-in (api/devsignin.go): present only on the embedded default's dev secret.
export async function devUsers(clinic) {
  const res = await fetch(`/dev/signin/users?clinic=${encodeURIComponent(clinic)}`, { cache: 'no-store' });
  if (res.status === 404) return null;
  if (!res.ok) throw await fail(res);
  return (await res.json()).users;
}

export async function devToken(clinic, userId, role = 'staff') {
  const res = await fetch('/dev/signin/token', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ clinic, user_id: userId, role }),
  });
  if (!res.ok) throw await fail(res);
  return (await res.json()).token;
}

// A Server-Sent Events reader over fetch(). The browser's EventSource cannot send an
// Authorization header, and GET /v1/stream takes only a bearer token (a token in the URL would
// end up in logs and history), so this reads the stream itself: it parses the event stream
// format, remembers the last `id:` and reconnects with Last-Event-ID, so nothing is lost or
// repeated across a dropped connection (the server answers `reset` when it cannot resume).

export function openStream({ url = '/v1/stream', headers, onEvent, onState }) {
  let lastId = null;
  let retry = 3000;
  let stopped = false;
  let controller = null;

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  async function connect() {
    while (!stopped) {
      controller = new AbortController();
      try {
        const h = { ...headers(), Accept: 'text/event-stream' };
        if (lastId !== null) h['Last-Event-ID'] = lastId;
        const res = await fetch(url, { headers: h, signal: controller.signal, cache: 'no-store' });
        if (res.status === 401 || res.status === 403) {
          onState('denied', res.status);
          return; // retrying cannot help: the token is bad or its user is not active staff
        }
        if (!res.ok || !res.body) throw new Error(`stream answered ${res.status}`);
        onState('open');
        await read(res.body);
      } catch (err) {
        if (stopped) return;
      }
      onState('reconnecting');
      await sleep(retry);
    }
  }

  async function read(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    let event = '';
    let data = [];
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        let line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.endsWith('\r')) line = line.slice(0, -1);
        if (line === '') {
          if (data.length > 0) {
            const text = data.join('\n');
            let parsed = null;
            try { parsed = JSON.parse(text); } catch { parsed = text; }
            onEvent(event || 'message', parsed);
          }
          event = '';
          data = [];
          continue;
        }
        if (line.startsWith(':')) continue; // a heartbeat comment
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let val = colon < 0 ? '' : line.slice(colon + 1);
        if (val.startsWith(' ')) val = val.slice(1);
        if (field === 'event') event = val;
        else if (field === 'data') data.push(val);
        else if (field === 'id' && !val.includes('\0')) lastId = val;
        else if (field === 'retry' && /^\d+$/.test(val)) retry = Number(val);
      }
    }
  }

  connect();
  return {
    // drop cuts the current connection as a network failure would; the reader reconnects
    // with Last-Event-ID (tests use it to prove the resume).
    drop() {
      if (controller) controller.abort();
    },
    close() {
      stopped = true;
      if (controller) controller.abort();
    },
  };
}

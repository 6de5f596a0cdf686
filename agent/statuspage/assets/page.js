// The status page's script: it fetches the agent's /v1/status and the
// page's /v1/history every few seconds and fills the elements marked with
// data-field. A figure the agent does not report shows as "—".
(function () {
  'use strict';
  var cfg = JSON.parse(document.getElementById('page-config').textContent);
  var DASH = '\u2014';
  var SVGNS = 'http://www.w3.org/2000/svg';

  function field(name) { return document.querySelector('[data-field="' + name + '"]'); }

  // get reads a dotted path of o; undefined when any step is missing.
  function get(o, path) {
    var parts = path.split('.');
    for (var i = 0; i < parts.length; i++) {
      if (o === null || typeof o !== 'object') { return undefined; }
      o = o[parts[i]];
    }
    return o === null ? undefined : o;
  }

  // pick returns the first of paths that o has.
  function pick(o, paths) {
    for (var i = 0; i < paths.length; i++) {
      var v = get(o, paths[i]);
      if (v !== undefined && v !== '') { return v; }
    }
    return undefined;
  }

  // set shows text in the field (a dash when missing) and keeps the raw
  // value, if any, in data-value for whoever reads the page by program.
  function set(name, text, value) {
    var el = field(name);
    if (!el) { return; }
    el.textContent = (text === undefined || text === null || text === '') ? DASH : String(text);
    if (value === undefined || value === null) { el.removeAttribute('data-value'); } else { el.setAttribute('data-value', String(value)); }
  }

  function num(v) { return typeof v === 'number' && isFinite(v) ? v : undefined; }

  function bytes(n) {
    if (num(n) === undefined) { return undefined; }
    var units = ['B', 'kB', 'MB', 'GB', 'TB'];
    var i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
    return (i === 0 ? String(n) : n.toFixed(n < 10 ? 2 : 1)) + ' ' + units[i];
  }

  function duration(s) {
    if (num(s) === undefined || s < 0) { return undefined; }
    s = Math.round(s);
    if (s < 60) { return s + ' s'; }
    if (s < 3600) { return Math.floor(s / 60) + ' min ' + (s % 60) + ' s'; }
    if (s < 86400) { return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min'; }
    return Math.floor(s / 86400) + ' d ' + Math.floor((s % 86400) / 3600) + ' h';
  }

  // seconds reads an agent duration: a number of seconds, or Go's
  // time.Duration text ("1h2m3.5s").
  function seconds(v) {
    if (typeof v === 'number') { return v; }
    if (typeof v !== 'string') { return undefined; }
    var m = v.match(/^(?:(\d+)h)?(?:(\d+)m(?!s))?(?:([\d.]+)s)?$/);
    if (!m || v === '') { return undefined; }
    return (+(m[1] || 0)) * 3600 + (+(m[2] || 0)) * 60 + (+(m[3] || 0));
  }

  // ago shows a timestamp as its age, keeping the timestamp itself.
  function setAgo(name, ts) {
    var t = typeof ts === 'string' ? Date.parse(ts) : NaN;
    if (isNaN(t) || t <= 0) { set(name, undefined); return; }
    var age = Math.max(0, (Date.now() - t) / 1000);
    set(name, duration(age) + ' ago', ts);
    field(name).title = new Date(t).toISOString();
  }

  // modemNow is what the latest modem poll found: modem_status, unless the
  // poll failed (then nothing is known now: {}); an agent without polls
  // has only what the modem reported when it opened (modem).
  function modemNow(st) {
    var ms = get(st, 'modem_status');
    if (ms && typeof ms === 'object') { return ms.poll_error ? {} : ms; }
    return get(st, 'modem') || {};
  }

  // signalDBM is the modem's signal in dBm now: a number, null for "no
  // signal", undefined when unknown. It is the agent's dBm figure, or +CSQ's
  // rssi converted (3GPP TS 27.007: -113 + 2*rssi, 99 for none).
  function signalDBM(m) {
    if ('signal_dbm' in m) { return num(m.signal_dbm) === undefined ? null : m.signal_dbm; }
    var rssi = num(m.signal_rssi);
    if (rssi === undefined) { return undefined; }
    return rssi >= 0 && rssi <= 31 ? -113 + 2 * rssi : null;
  }

  // bars maps dBm to 0-4 bars, the usual thresholds for 2G-4G RSSI.
  function bars(dbm) {
    if (dbm >= -73) { return 4; }
    if (dbm >= -83) { return 3; }
    if (dbm >= -93) { return 2; }
    if (dbm >= -109) { return 1; }
    return 0;
  }

  function showLink(st) {
    var up = pick(st, ['uplink.connected', 'link.connected', 'uplink.link_up']);
    var el = field('link-state');
    var state = up === true ? 'up' : up === false ? 'down' : 'unknown';
    set('link-state', state === 'unknown' ? undefined : state);
    el.setAttribute('data-state', state);
    set('uplink-kind', pick(st, ['uplink.kind']));
    setAgo('link-since', pick(st, ['uplink.connected_since', 'uplink.since']));
    setAgo('last-ack', pick(st, ['uplink.last_ack']));
    var rc = num(pick(st, ['uplink.reconnects']));
    set('reconnects', rc, rc);
    var err = pick(st, ['uplink.last_error.message', 'uplink.last_error.error', 'uplink.last_error']);
    if (typeof err === 'object') { err = JSON.stringify(err); }
    var errAt = pick(st, ['uplink.last_error.time', 'uplink.last_error_time', 'uplink.last_error_at']);
    var errAge = typeof errAt === 'string' ? (Date.now() - Date.parse(errAt)) / 1000 : NaN;
    set('last-error', err === undefined ? undefined : (isNaN(errAge) ? err : err + ' (' + duration(Math.max(0, errAge)) + ' ago)'), err);
  }

  function showModem(st) {
    var now = modemNow(st);
    set('modem-model', pick(st, ['modem.model']));
    set('modem-imei', pick(st, ['modem.imei']));
    set('modem-operator', now.operator);
    set('registration', now.registration);
    var ready = get(st, 'modem_ready');
    set('modem-ready', ready === true ? 'yes' : ready === false ? 'no' : undefined, ready);
    var dbm = signalDBM(now);
    set('signal-dbm', dbm === null ? 'no signal' : dbm === undefined ? undefined : dbm + ' dBm', dbm === null ? undefined : dbm);
    field('signal-bars').setAttribute('data-bars', String(dbm === null || dbm === undefined ? 0 : bars(dbm)));
  }

  function showSpool(st) {
    var depth = num(get(st, 'spool.pending_readings'));
    set('spool-depth', depth, depth);
    var b = num(get(st, 'spool.pending_bytes'));
    set('spool-bytes', bytes(b), b);
    var oldest = pick(st, ['spool.oldest_age_seconds', 'spool.oldest_age']);
    var oldestAt = pick(st, ['spool.oldest_time', 'spool.oldest', 'spool.oldest_reading']);
    if (seconds(oldest) !== undefined) {
      set('spool-oldest-age', duration(seconds(oldest)), seconds(oldest));
    } else if (typeof oldestAt === 'string') {
      setAgo('spool-oldest-age', oldestAt);
    } else {
      set('spool-oldest-age', depth === 0 ? 'none waiting' : undefined);
    }
    var dropped = num(get(st, 'spool.dropped_readings'));
    set('spool-dropped', dropped, dropped);
  }

  function showStatus(st) {
    set('device-id', get(st, 'device_id'));
    var up = seconds(get(st, 'uptime'));
    set('uptime', duration(up), up);
    showLink(st);
    showModem(st);
    showSpool(st);
    var ver = pick(st, ['remote_config.version', 'remote_config.committed.version', 'config_version']);
    set('config-version', ver, ver);
    var pr = num(get(st, 'plugin_restarts'));
    set('plugin-restarts', pr, pr);
  }

  // chart draws points' values up to now as polylines, broken where a
  // value is missing: over the whole window, or since the first point when
  // the agent has not run that long (spanText says which).
  function chart(name, points, value, windowMs, unit) {
    var svg = field(name);
    while (svg.firstChild) { svg.removeChild(svg.firstChild); }
    var now = Date.now(), from = now - windowMs;
    var first = points.length ? Date.parse(points[0].time) : NaN;
    if (!isNaN(first) && first > from && now - first >= 1000) { from = first; }
    var spanMs = now - from;
    var vals = [];
    points.forEach(function (p) {
      var t = Date.parse(p.time), v = value(p);
      vals.push({ t: t, v: (v === undefined || v === null || t < from) ? undefined : v });
    });
    var have = vals.filter(function (p) { return p.v !== undefined; });
    svg.setAttribute('data-points', String(have.length));
    if (have.length === 0) { set(name + '-range', undefined); return; }
    var lo = Math.min.apply(null, have.map(function (p) { return p.v; }));
    var hi = Math.max.apply(null, have.map(function (p) { return p.v; }));
    var round = function (v) { return Math.round(v * 10) / 10; };
    set(name + '-range', lo === hi ? 'all ' + round(lo) + unit : round(lo) + ' to ' + round(hi) + unit);
    if (hi === lo) { hi += 1; lo -= 1; }
    var line = [];
    function flush() {
      if (line.length === 0) { return; }
      if (line.length === 1) { line.push((+line[0].split(',')[0] + 1) + ',' + line[0].split(',')[1]); }
      var pl = document.createElementNS(SVGNS, 'polyline');
      pl.setAttribute('points', line.join(' '));
      svg.appendChild(pl);
      line = [];
    }
    vals.forEach(function (p) {
      if (p.v === undefined) { flush(); return; }
      var x = ((p.t - from) / spanMs) * 300, y = 76 - ((p.v - lo) / (hi - lo)) * 72;
      line.push(x.toFixed(1) + ',' + y.toFixed(1));
    });
    flush();
    var title = document.createElementNS(SVGNS, 'title');
    title.textContent = 'from ' + lo + ' to ' + hi;
    svg.appendChild(title);
  }

  // showSpan says what time the charts cover.
  function showSpan(points, windowMs) {
    var first = points.length ? Date.parse(points[0].time) : NaN;
    if (isNaN(first) || Date.now() - first >= windowMs) {
      set('chart-span', 'last ' + cfg.window_text);
    } else {
      set('chart-span', 'since ' + new Date(first).toLocaleTimeString() + ' (the last ' + cfg.window_text + ' once the agent has run that long)');
    }
  }

  function showHistory(h) {
    var pts = Array.isArray(h.points) ? h.points : [];
    var windowMs = (num(h.window_seconds) || 3600) * 1000;
    chart('chart-readings', pts, function (p) { return p.readings_per_minute; }, windowMs, ' per minute');
    chart('chart-signal', pts, function (p) { return p.signal_dbm; }, windowMs, ' dBm');
    showSpan(pts, windowMs);
    var last = pts.length ? pts[pts.length - 1] : {};
    var rpm = num(last.readings_per_minute);
    set('readings-per-minute', rpm === undefined ? undefined : (Math.round(rpm * 10) / 10) + '/min', rpm);
    var sig = num(last.signal_dbm);
    set('chart-signal-last', sig === undefined ? undefined : sig + ' dBm', sig);
    var u = h.usage || {};
    var day = num(u.day_tx_bytes) !== undefined ? u.day_tx_bytes + (u.day_rx_bytes || 0) : undefined;
    var month = num(u.month_tx_bytes) !== undefined ? u.month_tx_bytes + (u.month_rx_bytes || 0) : undefined;
    set('usage-day', u.day ? u.day : undefined);
    set('usage-month', u.month ? u.month : undefined);
    set('usage-today', day === undefined ? undefined : bytes(day) + ' (' + bytes(u.day_tx_bytes) + ' sent, ' + bytes(u.day_rx_bytes || 0) + ' received)', day);
    set('usage-this-month', month === undefined ? undefined : bytes(month) + ' (' + bytes(u.month_tx_bytes) + ' sent, ' + bytes(u.month_rx_bytes || 0) + ' received)', month);
  }

  // showWarnings lists the agent's warnings and the page's own, newest first.
  function showWarnings(st, h) {
    var list = [];
    var add = function (w, source) {
      if (typeof w === 'string') { list.push({ time: '', message: w, source: source }); }
      else if (w && typeof w === 'object') { list.push({ time: w.time || '', message: w.message || w.reason || JSON.stringify(w), source: source }); }
    };
    (Array.isArray(get(st, 'warnings')) ? get(st, 'warnings') : []).forEach(function (w) { add(w, 'agent'); });
    (Array.isArray(get(st, 'health.reasons')) ? get(st, 'health.reasons') : []).forEach(function (w) { add('unhealthy: ' + w, 'agent'); });
    var pollErr = get(st, 'modem_status.poll_error');
    if (typeof pollErr === 'string' && pollErr !== '') { add({ time: get(st, 'modem_status.polled_at'), message: 'modem poll: ' + pollErr }, 'agent'); }
    (h && Array.isArray(h.warnings) ? h.warnings : []).forEach(function (w) { add(w, 'page'); });
    list.sort(function (a, b) { return (Date.parse(b.time) || 0) - (Date.parse(a.time) || 0); });
    var ul = field('warnings');
    while (ul.firstChild) { ul.removeChild(ul.firstChild); }
    ul.setAttribute('data-count', String(list.length));
    if (list.length === 0) {
      var none = document.createElement('li');
      none.className = 'none';
      none.textContent = 'none';
      ul.appendChild(none);
      return;
    }
    list.slice(0, 20).forEach(function (w) {
      var li = document.createElement('li');
      if (w.time) {
        var tm = document.createElement('time');
        tm.dateTime = w.time;
        tm.textContent = new Date(Date.parse(w.time)).toLocaleTimeString();
        li.appendChild(tm);
      }
      li.appendChild(document.createTextNode(w.message));
      ul.appendChild(li);
    });
  }

  function fetchJSON(path) {
    var ctl = typeof AbortController === 'function' ? new AbortController() : null;
    var timer = ctl ? setTimeout(function () { ctl.abort(); }, cfg.timeout_ms) : 0;
    return fetch(path, { credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' }, signal: ctl ? ctl.signal : undefined })
      .then(function (r) {
        if (r.status === 401) { throw new Error('not authorised: open this page once as /?token=<status token>'); }
        if (!r.ok) { throw new Error(path + ': HTTP ' + r.status); }
        return r.json();
      })
      .finally(function () { clearTimeout(timer); });
  }

  var lastOK = 0;
  function refresh() {
    Promise.allSettled([fetchJSON(cfg.status_path), fetchJSON(cfg.history_path)]).then(function (res) {
      var st = res[0].status === 'fulfilled' ? res[0].value : null;
      var h = res[1].status === 'fulfilled' ? res[1].value : null;
      var state = field('page-state');
      if (st) {
        showStatus(st);
        lastOK = Date.now();
        state.textContent = 'updated ' + new Date(lastOK).toLocaleTimeString();
        state.setAttribute('data-state', 'live');
      } else {
        state.textContent = 'agent unreachable (' + (res[0].reason && res[0].reason.message) + ')' +
          (lastOK ? ', figures from ' + new Date(lastOK).toLocaleTimeString() : '');
        state.setAttribute('data-state', 'unreachable');
        // Nothing is known of the link while the agent does not answer.
        set('link-state', undefined);
        field('link-state').setAttribute('data-state', 'unknown');
      }
      if (h) { showHistory(h); }
      showWarnings(st || {}, h);
      state.setAttribute('data-refreshed', String(Date.now()));
    }).finally(function () { setTimeout(refresh, cfg.refresh_ms); });
  }
  refresh();
})();

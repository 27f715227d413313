// marathon-lb dashboard: renders /api/v1/state and refreshes it in place every 2 s.
// Plain JavaScript, no dependencies; every value goes in as text (never as HTML).
(function () {
  'use strict';
  var $ = function (id) { return document.getElementById(id); };
  function h(tag, attrs) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      var v = attrs[k];
      if (v === null || v === undefined || v === false) return;
      if (k === 'class') e.className = v; else e.setAttribute(k, v);
    });
    for (var i = 2; i < arguments.length; i++) append(e, arguments[i]);
    return e;
  }
  function append(e, kid) {
    if (kid === null || kid === undefined) return;
    if (Array.isArray(kid)) { kid.forEach(function (k) { append(e, k); }); return; }
    e.append(kid instanceof Node ? kid : String(kid));
  }
  function fill(id) {
    var e = $(id);
    e.replaceChildren();
    for (var i = 1; i < arguments.length; i++) append(e, arguments[i]);
  }
  function ago(iso) {
    if (!iso) return 'never';
    var s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    return span(s) + ' ago';
  }
  function span(s) {
    if (s === null || s === undefined) return '-';
    if (s < 60) return s + 's';
    if (s < 3600) return Math.floor(s / 60) + 'm ' + (s % 60) + 's';
    if (s < 86400) return Math.floor(s / 3600) + 'h ' + Math.floor((s % 3600) / 60) + 'm';
    return Math.floor(s / 86400) + 'd ' + Math.floor((s % 86400) / 3600) + 'h';
  }
  function card(title, value, detail, tone) {
    return h('div', { class: 'card ' + (tone || '') }, h('div', { class: 'card-title' }, title),
      h('div', { class: 'card-value' }, value), h('div', { class: 'card-detail' }, detail || ''));
  }

  var state = null;

  function renderHealth(st) {
    var hl = st.health;
    var badge = $('health');
    badge.textContent = hl.status;
    badge.className = 'health ' + hl.status;
    fill('reasons', hl.reasons.map(function (r) { return h('li', {}, r); }));
    var links = [];
    if (st.haproxy.stats_port && st.haproxy.stats_uri) {
      var url = location.protocol + '//' + location.hostname + ':' + st.haproxy.stats_port + st.haproxy.stats_uri;
      links.push(h('a', { href: url, id: 'haproxy-stats' }, 'HAProxy stats'));
    }
    fill('stats-link', links);
  }

  function renderCards(st) {
    var s = st.summary, m = st.marathon, last = s.last_apply_detail;
    var lastText = last ? (last.how + (last.reason ? ' (' + last.reason + ')' : '')) : 'none yet';
    var lastDetail = last ? (ago(last.at) + (last.error ? ': ' + last.error : (last.changes ? ': ' + last.changes : ''))) : '';
    var marathonOk = m.connected || (m.last_fetch_at && !m.last_fetch_error);
    fill('cards',
      card('Apps served', s.apps, s.backends + ' backends'),
      card('Servers', s.servers_up + ' up / ' + s.servers_down + ' down',
        s.servers_maint ? s.servers_maint + ' in maintenance' : '', s.servers_down ? 'bad' : 'good'),
      card('Left out', s.left_out, s.left_out ? 'see below' : 'none', s.left_out ? 'warn' : 'good'),
      card('Last apply', lastText, lastDetail, last && !last.ok ? 'bad' : ''),
      card('Marathon', m.connected ? 'connected' : (m.last_fetch_error ? 'unreachable' : 'polling'),
        (m.endpoint || '') + (m.last_event_type ? ' · last event ' + m.last_event_type + ' ' + ago(m.last_event_at) : ''),
        marathonOk ? 'good' : 'bad'),
      card('HAProxy', st.haproxy.version || (st.haproxy.read ? 'running' : 'not read'),
        st.haproxy.master_pid ? 'master ' + st.haproxy.master_pid + ', workers ' + st.haproxy.workers.join(' ') +
          (st.haproxy.old_workers.length ? ', ' + st.haproxy.old_workers.length + ' old' : '') +
          ', up ' + span(st.haproxy.uptime_s) : (st.haproxy.error || '')));
  }

  function matches(svc, q) {
    if (!q) return true;
    var text = [svc.app_id, svc.backend, svc.bind, svc.mode, String(svc.service_port), svc.path || '']
      .concat(svc.vhosts).concat(svc.servers.map(function (s) { return s.address + ' ' + s.state; }))
      .join(' ').toLowerCase();
    return q.split(/\s+/).every(function (w) { return text.indexOf(w) >= 0; });
  }

  function serverBadge(s) {
    var title = s.name + ' ' + s.address + (s.check ? ' · ' + s.check : '') +
      (s.check_desc ? ' (' + s.check_desc + ')' : '') + ' · ' + s.sessions + ' sessions';
    return h('span', { class: 'badge state-' + s.state, title: title, 'data-server': s.name, 'data-state': s.state },
      h('b', {}, s.state), ' ', s.address, s.check && s.state !== 'UP' ? ' ' + s.check : '',
      s.sessions ? ' · ' + s.sessions : '');
  }

  function renderServices(st) {
    var q = $('search').value.trim().toLowerCase();
    var shown = st.services.filter(function (s) { return matches(s, q); });
    fill('services-count', shown.length + ' of ' + st.services.length);
    fill('services-body', shown.length ? shown.map(function (s) {
      var route = s.vhosts.length ? s.vhosts.join(', ') + (s.path ? ' ' + s.path : '') : (s.path || '-');
      return h('tr', { 'data-backend': s.backend, 'data-app': s.app_id },
        h('td', {}, h('div', { class: 'app' }, s.app_id),
          h('div', { class: 'sub' }, (s.port_index === null ? '' : 'port index ' + s.port_index + ' · ') + 'backend ' + s.backend)),
        h('td', { class: 'port' }, s.bind),
        h('td', {}, s.mode),
        h('td', { class: 'vhosts' }, route),
        h('td', {}, h('span', { class: 'badge state-' + (s.backend_status || 'UNKNOWN').split(' ')[0] }, s.backend_status || '?')),
        h('td', { class: 'servers' }, s.servers.map(serverBadge)));
    }) : h('tr', {}, h('td', { colspan: 6, class: 'empty' }, q ? 'no service matches' : 'no services served')));
  }

  function renderLeftOut(st) {
    $('left-out-section').hidden = st.left_out.length === 0;
    fill('left-out-body', st.left_out.map(function (a) {
      return h('tr', { 'data-app': a.app_id }, h('td', { class: 'app' }, a.app_id),
        h('td', {}, a.labels.map(function (l) { return h('code', { class: 'label' }, l); })),
        h('td', { class: 'reason' }, a.error), h('td', {}, ago(new Date(a.since * 1000).toISOString())));
    }));
  }

  function renderApplies(st) {
    fill('applies-body', st.applies.length ? st.applies.map(function (a) {
      return h('tr', { class: a.ok ? '' : 'failed' }, h('td', { title: a.at }, ago(a.at)),
        h('td', {}, a.how + (a.repeated ? ' ×' + (a.repeated + 1) : '')), h('td', {}, a.reason || '-'),
        h('td', { class: 'changes' }, a.error || a.changes || '-'), h('td', {}, a.duration_ms + ' ms'),
        h('td', {}, a.ok ? 'ok' : 'failed'));
    }) : h('tr', {}, h('td', { colspan: 6, class: 'empty' }, 'no pass yet')));
    fill('footer', 'marathon-lb ' + st.marathon_lb.version + ' · up ' + span(st.marathon_lb.uptime_s) +
      ' · ' + st.summary.passes + ' passes, ' + st.summary.applies + ' applies (' + st.summary.runtime_applies +
      ' runtime) · updated ' + new Date(st.generated_at).toLocaleTimeString());
  }

  function render(st) {
    state = st;
    renderHealth(st); renderCards(st); renderServices(st); renderLeftOut(st); renderApplies(st);
  }

  function refresh() {
    fetch('/api/v1/state', { cache: 'no-store' }).then(function (r) {
      if (!r.ok) throw new Error('HTTP ' + r.status);
      return r.json();
    }).then(function (st) {
      render(st);
      $('live').textContent = 'live'; $('live').className = 'live ok';
    }).catch(function (e) {
      $('live').textContent = 'cannot reach marathon-lb (' + e.message + ')'; $('live').className = 'live bad';
    });
  }

  $('search').addEventListener('input', function () { if (state) renderServices(state); });
  render(JSON.parse($('initial-state').textContent));
  setInterval(refresh, 2000);
})();

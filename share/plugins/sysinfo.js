/* sysinfo: a host dashboard from GET metrics/<sid>, refreshed every 5 s while open.
 * All text goes through el() / textContent: nothing from the endpoint is HTML. */
(function () {
  'use strict';
  var X = window.OrbitExplorer;
  if (!X) return;
  var REFRESH_MS = 5000;
  var u = X.util, el = X.el;

  function num(v) { return typeof v === 'number' && isFinite(v); }
  function txt(v) { return v === null || v === undefined || v === '' ? '—' : String(v); }
  function arr(v) { return Array.isArray(v) ? v : []; }
  function obj(v) { return v && typeof v === 'object' && !Array.isArray(v) ? v : {}; }

  function meter(label, percent, detail) {
    return el('div', {class: 'meter'},
      el('span', {class: 'label'}, label),
      el('span', {class: 'value'}, detail ? detail + '  ·  ' + u.fmtPercent(percent) : u.fmtPercent(percent)),
      u.bar(percent));
  }

  function header(m, role, stamp) {
    var s = obj(m.system);
    var facts = [s.os, s.kernel ? 'kernel ' + s.kernel : null, s.arch, s.user ? 'user ' + s.user : null,
                 num(s.uptime) ? 'up ' + u.fmtDuration(s.uptime) : null].filter(Boolean);
    var r = obj(role);
    var badges = [];
    if (r.role) badges.push(el('span', {class: 'badge info', title: 'host role'}, String(r.role)));
    if (r.python_version) badges.push(el('span', {class: 'badge', title: 'endpoint Python'}, 'Python ' + r.python_version));
    if (r.scheduler) badges.push(el('span', {class: 'badge', title: 'batch scheduler'}, String(r.scheduler)));
    if (r.in_job) badges.push(el('span', {class: 'badge warn', title: 'running inside a batch job'}, 'in job'));
    return el('section', {class: 'card wide sysinfo-head'},
      el('div', {class: 'sysinfo-title'},
        el('span', {id: 'sysinfo-hostname', 'data-testid': 'sysinfo-hostname', class: 'big'}, txt(s.hostname)),
        badges,
        el('span', {class: 'sysinfo-stamp muted'}, stamp)),
      el('div', {class: 'sysinfo-facts'}, facts.map(function (f, i) {
        return [i ? el('span', {class: 'sep'}, '·') : null, el('span', null, String(f))];
      })));
  }

  function cpuCard(c) {
    c = obj(c);
    var load = arr(c.load).map(function (l) { return num(l) ? l.toFixed(2) : '—'; });
    var cores = (num(c.cores_physical) ? c.cores_physical : '—') + ' physical / ' +
                (num(c.cores_logical) ? c.cores_logical : '—') + ' logical';
    var perCore = arr(c.percent_per_core).map(function (p) { return u.fmtPercent(p); });
    return el('section', {class: 'card'}, el('h3', null, 'CPU'),
      el('div', {class: 'sysinfo-model', title: txt(c.model)}, txt(c.model)),
      meter('utilisation', c.percent),
      u.kvTable({
        cores: cores,
        'per core': perCore.length ? perCore.join('  ') : '—',
        frequency: num(c.freq_mhz) ? (c.freq_mhz / 1000).toFixed(2) + ' GHz' : '—',
        'load 1/5/15 min': load.length ? load.join('  ') : '—'
      }));
  }

  function memoryCard(mem) {
    mem = obj(mem);
    var swapPct = num(mem.swap_total) && mem.swap_total > 0 && num(mem.swap_used)
      ? 100 * mem.swap_used / mem.swap_total : null;
    return el('section', {class: 'card'}, el('h3', null, 'Memory'),
      meter('used', mem.percent, u.fmtBytes(mem.used) + ' of ' + u.fmtBytes(mem.total)),
      swapPct !== null
        ? meter('swap', swapPct, u.fmtBytes(mem.swap_used) + ' of ' + u.fmtBytes(mem.swap_total))
        : null,
      u.kvTable({available: u.fmtBytes(mem.available), total: u.fmtBytes(mem.total),
                 swap: swapPct === null ? 'none' : u.fmtBytes(mem.swap_total)}));
  }

  function gpuCard(gpus) {
    gpus = arr(gpus);
    var body;
    if (!gpus.length) {
      body = el('div', {class: 'muted', 'data-testid': 'sysinfo-gpus-none'}, 'none');
    } else {
      body = u.table([{label: '#'}, {label: 'GPU'}, {label: 'memory'}, {label: 'util', num: true}],
        gpus.map(function (g) {
          g = obj(g);
          var pct = num(g.memory_total) && g.memory_total > 0 && num(g.memory_used)
            ? 100 * g.memory_used / g.memory_total : null;
          return [txt(g.index),
                  el('span', {title: txt(g.vendor)}, txt(g.name)),
                  num(g.memory_total)
                    ? el('div', null, el('div', {class: 'muted'}, u.fmtBytes(g.memory_used) + ' / ' + u.fmtBytes(g.memory_total)),
                         pct === null ? null : u.bar(pct))
                    : '—',
                  u.fmtPercent(g.utilization)];
        }));
    }
    return el('section', {class: 'card'}, el('h3', null, 'GPUs'), body);
  }

  var DISK_BADGE = {shared: 'info', 'local ssd': 'ok', 'local hdd': '', unknown: 'warn'};

  function diskCard(disks) {
    disks = arr(disks);
    return el('section', {class: 'card wide'}, el('h3', null, 'Disks'),
      u.table([{label: 'mount'}, {label: 'device'}, {label: 'fstype'}, {label: 'type'},
               {label: 'used / total', num: true}, {label: 'free', num: true}, {label: 'usage'}],
        disks.map(function (d) {
          d = obj(d);
          var kind = txt(d.type);
          return [el('span', {class: 'mono'}, txt(d.mount)),
                  el('span', {class: 'mono muted'}, txt(d.device)),
                  txt(d.fstype),
                  el('span', {class: 'badge ' + (Object.prototype.hasOwnProperty.call(DISK_BADGE, kind) ? DISK_BADGE[kind] : '')}, kind),
                  u.fmtBytes(d.used) + ' / ' + u.fmtBytes(d.total),
                  u.fmtBytes(d.free),
                  el('div', {class: 'sysinfo-usage'}, u.bar(d.percent), el('span', null, u.fmtPercent(d.percent)))];
        }), {empty: 'no disks reported'}));
  }

  function netCard(ifaces) {
    ifaces = arr(ifaces).slice().sort(function (a, b) {
      return (obj(b).is_up ? 1 : 0) - (obj(a).is_up ? 1 : 0);
    });
    return el('section', {class: 'card wide'}, el('h3', null, 'Network'),
      u.table([{label: 'interface'}, {label: 'state'}, {label: 'addresses'}, {label: 'speed', num: true}],
        ifaces.map(function (n) {
          n = obj(n);
          var addrs = arr(n.addresses).map(function (a) {
            a = obj(a);
            return el('div', {class: 'mono' + (a.family === 'mac' ? ' muted' : '')},
                      txt(a.address) + (a.family ? '  (' + a.family + ')' : ''));
          });
          return [el('span', {class: 'mono'}, txt(n.name)),
                  el('span', {class: 'badge ' + (n.is_up ? 'ok' : '')}, n.is_up ? 'up' : 'down'),
                  addrs.length ? addrs : '—',
                  num(n.speed_mbps) && n.speed_mbps > 0 ? n.speed_mbps + ' Mb/s' : '—'];
        }), {empty: 'no interfaces reported'}));
  }

  X.registerPlugin('sysinfo', {
    title: 'System',
    render: function (container, ctx) {
      var errorBox = el('div', {class: 'error-box', hidden: true});
      var stamp = 'loading…';
      var board = el('div', {class: 'cards'}, el('div', {class: 'muted'}, 'Loading metrics…'));
      var role = null, last = null;
      u.replace(container,
        el('style', null,
          '.sysinfo-title{display:flex;align-items:center;gap:8px;flex-wrap:wrap}' +
          '.sysinfo-stamp{margin-left:auto;font-size:12px}' +
          '.sysinfo-facts{color:var(--muted);margin:2px 0 6px;display:flex;gap:6px;flex-wrap:wrap}' +
          '.sysinfo-model{font-weight:600;margin-bottom:4px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}' +
          '.sysinfo-usage{display:grid;grid-template-columns:1fr 52px;gap:8px;align-items:center;min-width:140px}' +
          '.sysinfo-usage span{text-align:right;font-variant-numeric:tabular-nums;font-size:12.5px}'),
        errorBox, board);

      function draw() {
        if (!last) return;
        u.replace(board, header(last, role, stamp), cpuCard(last.cpu), memoryCard(last.memory),
                  gpuCard(last.gpus), diskCard(last.disks), netCard(last.network));
      }

      function loadRole() {
        return ctx.api('GET', 'host_role').then(function (r) { role = r; draw(); }, function () {});
      }

      function refresh() {
        return ctx.withSession(function (sid) {
          return ctx.api('GET', 'metrics/' + encodeURIComponent(sid));
        }).then(function (m) {
          if (!ctx.active) return;
          last = obj(m);
          stamp = 'updated ' + u.fmtTime() + ' · every ' + REFRESH_MS / 1000 + ' s';
          errorBox.hidden = true;
          draw();
        }, function (err) {
          if (!ctx.active) return;
          errorBox.textContent = (last ? 'Refresh failed (showing the last answer): ' : 'Cannot read metrics: ') +
                                 u.describeError(err);
          errorBox.hidden = false;
          if (!last) u.replace(board);
        });
      }

      loadRole();
      ctx.every(REFRESH_MS, refresh);
    }
  });
})();

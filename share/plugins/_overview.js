/* ORBIT Explorer: the overview (one live card per endpoint, with the plugins' summary
 * parts) and the endpoint page (its card, plugins and connection). See _dom.js for
 * how the shell's files fit together.
 */
(function () {
  'use strict';
  var S = window.OrbitExplorerShell;
  var $ = S.$, BRIDGE = S.BRIDGE, SUMMARY_MS = S.SUMMARY_MS, SUMMARY_TIMEOUT_MS = S.SUMMARY_TIMEOUT_MS, arr = S.arr,
      bridgeUrl = S.bridgeUrl, buildTree = S.buildTree, clear = S.clear, closePage = S.closePage,
      describeError = S.describeError, disconnect = S.disconnect, el = S.el, endpointEntry = S.endpointEntry,
      endpointsOf = S.endpointsOf, fmtBytes = S.fmtBytes, fmtTime = S.fmtTime, hashFor = S.hashFor,
      isNum = S.isNum, kvTable = S.kvTable, loadModule = S.loadModule, makeContext = S.makeContext,
      meter = S.meter, newPage = S.newPage, obj = S.obj, ownValue = S.ownValue, pageHead = S.pageHead,
      pluginsOf = S.pluginsOf, replace = S.replace, state = S.state, stateBadge = S.stateBadge,
      table = S.table, titleOf = S.titleOf, toText = S.toText;

  // ---------------------------------------------------------------- overview
  /** Built-in overview parts, by plugin type; a module's registerPlugin(..., {summary}) wins. */
  var SUMMARIES = {};
  var SUMMARY_ORDER = ['sysinfo', 'queue_info', 'psij', 'rhapsody'];

  function summaryRank(type) {
    var i = SUMMARY_ORDER.indexOf(type);
    return i < 0 ? SUMMARY_ORDER.length : i;
  }

  function summarizerFor(info) {
    var spec = state.registry.get(info.type);
    if (spec && spec.summary) return Promise.resolve(spec.summary);
    var builtIn = ownValue(SUMMARIES, info.type);   // a type "constructor" is no built-in part
    if (builtIn) return Promise.resolve(builtIn);
    if (spec || !info.ui_module) return Promise.resolve(null);
    return loadModule(info.ui_module).then(function () {
      var loaded = state.registry.get(info.type);
      return loaded && loaded.summary ? loaded.summary : null;
    }, function () { return null; });
  }


  SUMMARIES.sysinfo = function (box, ctx) {
    var body = el('div', null, el('span', {class: 'muted'}, 'reading sysinfo…'));
    var stamp = el('div', {class: 'stamp', 'data-testid': 'stamp'});
    replace(box, body, stamp);
    var lastOk = null;
    ctx.every(SUMMARY_MS, function () {
      return ctx.withSession(function (sid) {
        return ctx.api('GET', 'metrics/' + encodeURIComponent(sid), null, {timeout: SUMMARY_TIMEOUT_MS});
      }).then(function (m) {
        if (!ctx.active) return;
        m = obj(m);
        var cpu = obj(m.cpu), mem = obj(m.memory), gpus = arr(m.gpus).map(obj);
        var gpu;
        if (gpus.length) {
          var util = gpus.filter(function (g) { return isNum(g.utilization); });
          var avg = util.length ? util.reduce(function (a, g) { return a + g.utilization; }, 0) / util.length : null;
          gpu = meter('GPU', avg, gpus.length + (gpus.length === 1 ? ' GPU' : ' GPUs'), 'gpu');
        } else {
          gpu = el('div', {class: 'meter', 'data-testid': 'gpu'}, el('span', {class: 'label'}, 'GPU'),
                   el('span', {class: 'value'}, 'none'));
        }
        replace(body,
          meter('CPU', cpu.percent, isNum(cpu.cores_logical) ? cpu.cores_logical + ' cores' : null, 'cpu'),
          meter('Memory', mem.percent, fmtBytes(mem.used) + ' of ' + fmtBytes(mem.total), 'memory'),
          gpu);
        lastOk = new Date();
        stamp.textContent = 'updated ' + fmtTime(lastOk);
      }, function (err) {
        if (!ctx.active) return;
        stamp.textContent = 'sysinfo: ' + describeError(err) + (lastOk ? ' · numbers from ' + fmtTime(lastOk) : '');
      });
    });
  };

  var QUEUE_SUMMARY_MS = 30000;         // queue_info caches the scheduler's answers for 60 s

  /** {state: n} of a list of records by their `state` (SLURM's "CANCELLED by 0" counts as CANCELLED). */
  function countStates(records) {
    var counts = Object.create(null);       // a state may be called "constructor"
    arr(records).forEach(function (r) {
      var st = toText(obj(r).state).split(/[ +]/)[0] || 'UNKNOWN';
      counts[st] = (counts[st] || 0) + 1;
    });
    return counts;
  }

  /** A part's line under its numbers: empty while its answers come (the card's
   * sysinfo stamp says how fresh it is), the error and the time of the last answer when not. */
  function stampText(stamp, lastOk, what, err) {
    stamp.textContent = err ? what + ': ' + describeError(err) + (lastOk ? ' · from ' + fmtTime(lastOk) : '') : '';
    stamp.title = lastOk ? 'updated ' + fmtTime(lastOk) : '';
  }

  /** queue_info: each queue's state and idle / total nodes, and my scheduler jobs by state. */
  SUMMARIES.queue_info = function (box, ctx) {
    var queues = el('div', {class: 'counts', 'data-testid': 'queues'}, el('span', {class: 'what'}, 'queues'),
                    el('span', {class: 'muted'}, 'reading…'));
    var jobs = el('div');
    var stamp = el('div', {class: 'stamp'});
    replace(box, queues, jobs, stamp);
    var lastOk = null;
    ctx.every(QUEUE_SUMMARY_MS, function () {
      return ctx.withSession(function (sid) {
        var s = encodeURIComponent(sid), o = {timeout: SUMMARY_TIMEOUT_MS};
        return Promise.all([ctx.api('GET', 'get_info/' + s, null, o), ctx.api('GET', 'list_all_jobs/' + s, null, o)]);
      }).then(function (got) {
        if (!ctx.active) return;
        var qs = obj(obj(got[0]).queues);
        var names = Object.keys(qs).sort();
        replace(queues, el('span', {class: 'what'}, 'queues'), names.length ? names.map(function (name) {
          var q = obj(qs[name]), n = obj(q.nodes);
          var up = /^up$/i.test(toText(q.state));
          return el('span', {class: 'badge ' + (up ? 'ok' : 'warn'), title: 'state ' + toText(q.state)},
                    name + (q['default'] ? '*' : '') + ' ' + (isNum(n.idle) ? n.idle + '/' : '') +
                    (isNum(n.total) ? n.total : '?') + ' idle');
        }) : el('span', {class: 'muted'}, 'none (backend ' + toText(obj(got[0]).backend) + ')'));
        replace(jobs, countsRow('my jobs', countStates(obj(got[1]).jobs), 'queue-jobs'));
        lastOk = new Date();
        stampText(stamp, lastOk);
      }, function (err) {
        if (ctx.active) stampText(stamp, lastOk, 'queues', err);
      });
    });
  };

  /** psij: the jobs submitted through this endpoint, by state. */
  SUMMARIES.psij = function (box, ctx) {
    var row = countsRow('psij jobs', {}, 'psij-jobs');
    var stamp = el('div', {class: 'stamp'});
    replace(box, row, stamp);
    var lastOk = null;
    ctx.every(SUMMARY_MS, function () {
      return ctx.withSession(function (sid) {
        return ctx.api('GET', 'list_jobs/' + encodeURIComponent(sid), null, {timeout: SUMMARY_TIMEOUT_MS});
      }).then(function (answer) {
        if (!ctx.active) return;
        var fresh = countsRow('psij jobs', countStates(obj(answer).jobs), 'psij-jobs');
        box.replaceChild(fresh, row);
        row = fresh;
        lastOk = new Date();
        stampText(stamp, lastOk);
      }, function (err) {
        if (ctx.active) stampText(stamp, lastOk, 'psij', err);
      });
    });
  };

  /** rhapsody: tasks of every session on the endpoint. Read from list_sessions, which
   * touches no session: polling statistics/<sid> would keep idle sessions alive, and a
   * session of the overview's own would start a backend. */
  SUMMARIES.rhapsody = function (box, ctx) {
    var row = el('div');
    var stamp = el('div', {class: 'stamp'});
    replace(box, row, stamp);
    var lastOk = null;
    ctx.every(SUMMARY_MS, function () {
      return ctx.api('GET', 'list_sessions', null, {timeout: SUMMARY_TIMEOUT_MS}).then(function (answer) {
        if (!ctx.active) return;
        var sessions = arr(obj(answer).sessions).map(obj);
        var counts = Object.create(null), total = 0, byCount = false;
        sessions.forEach(function (sess) {
          var c = obj(sess.counts);
          Object.keys(c).forEach(function (k) {
            if (isNum(c[k])) { counts[k] = (counts[k] || 0) + c[k]; byCount = true; }
          });
          if (isNum(sess.tasks)) total += sess.tasks;
        });
        replace(row, byCount ? countsRow('tasks', counts, 'rhapsody-summary')
          : el('div', {class: 'counts', 'data-testid': 'rhapsody-summary'}, el('span', {class: 'what'}, 'tasks'),
               sessions.length ? el('span', {class: 'badge info'}, total + ' in ' + sessions.length +
                                    (sessions.length === 1 ? ' session' : ' sessions'))
                               : el('span', {class: 'muted'}, 'none')));
        lastOk = new Date();
        stampText(stamp, lastOk);
      }, function (err) {
        if (ctx.active) stampText(stamp, lastOk, 'tasks', err);
      });
    });
  };

  /** Counts by state: {"RUNNING": 3, ...} -> "RUNNING 3 · QUEUED 1" as badges. */
  function countsRow(label, counts, testid) {
    counts = obj(counts);
    var keys = Object.keys(counts).filter(function (k) { return isNum(counts[k]); });
    return el('div', {class: 'counts', 'data-testid': testid},
      el('span', {class: 'what'}, label),
      keys.length ? keys.sort().map(function (k) {
        var kind = /fail|error|cancel/i.test(k) ? 'bad' : (/run|activ|execut/i.test(k) ? 'info'
          : (/done|complet|succe/i.test(k) ? 'ok' : ''));
        return el('span', {class: 'badge ' + kind}, k.toLowerCase() + ' ' + counts[k]);
      }) : el('span', {class: 'muted'}, 'none'));
  }

  function endpointFacts(entry) {
    var info = obj(entry && entry.endpoint);
    var facts = [];
    // one line each (a long value ends in "…"); the title holds it whole
    function fact(label, value) {
      var text = label + ' ' + toText(value);
      return el('span', {title: text}, text);
    }
    if (info.hostname) facts.push(fact('host', info.hostname));
    if (info.python_version) facts.push(fact('Python', info.python_version));
    if (info.version) facts.push(fact('orbit', info.version));
    if (isNum(info.connected_at)) {
      facts.push(el('span', {title: new Date(info.connected_at * 1000).toString()},
                    'connected since ' + fmtTime(new Date(info.connected_at * 1000))));
    }
    return facts;
  }

  function cardSignature(entry) {
    if (!entry) return 'group';
    var plugins = pluginsOf(entry);
    return JSON.stringify([obj(entry.endpoint).connected_at, Object.keys(plugins).sort().map(function (k) {
      var p = obj(plugins[k]);
      return [k, p.type, p.enabled];
    })]);
  }

  /** One endpoint's card: facts, state, the plugins' live summaries, links. */
  function makeCard(view, name, entry) {
    var sub = el('div', {class: 'sub-cards'});
    if (!entry) {
      return {sub: sub, subs: [], node: el('section', {class: 'card ep-card group', 'data-card': name},
        el('div', {class: 'ep-title'}, el('span', {class: 'group-name'}, name),
           el('span', {class: 'muted'}, 'group of endpoints')), sub)};
    }
    var info = obj(entry.endpoint);
    var plugins = pluginsOf(entry);
    var instances = Object.keys(plugins).sort(function (a, b) {
      return summaryRank(obj(plugins[a]).type) - summaryRank(obj(plugins[b]).type) || (a < b ? -1 : (a > b ? 1 : 0));
    });
    var summary = el('div', {class: 'summary'});
    var role = info.role || info.type;
    var link = name === BRIDGE ? '#/bridge' : hashFor(name);
    var node = el('section', {class: 'card ep-card', 'data-card': name, 'aria-label': 'endpoint ' + name},
      el('div', {class: 'ep-title'},
        el('a', {href: link, 'data-open': name}, name),
        stateBadge(name),
        role ? el('span', {class: 'badge info', title: 'role'}, toText(role)) : null),
      el('div', {class: 'facts'}, endpointFacts(entry)),
      summary,
      instances.length ? el('div', {class: 'chips', 'aria-label': 'plugins of ' + name},
        instances.map(function (inst) {
          return el('a', {href: hashFor(name, inst), 'data-chip': name + '/' + inst,
                          title: toText(obj(plugins[inst]).type)}, titleOf(inst, plugins[inst]));
        })) : el('div', {class: 'muted'}, 'no plugins'),
      sub);
    // a click on the card's background opens the endpoint, as its name does
    node.addEventListener('click', function (ev) {
      if (ev.target.closest('a, button, input, select, textarea, .sub-cards')) return;
      location.hash = link;
    });
    var card = {node: node, sub: sub, subs: [], dropped: false};
    instances.forEach(function (inst) {
      var pinfo = obj(plugins[inst]);
      if (pinfo.enabled === false) return;
      var part = el('div', {'data-summary': name + '/' + inst});
      summary.appendChild(part);
      summarizerFor(pinfo).then(function (fn) {
        if (!fn || card.dropped || !view.active) {
          if (part.parentNode) part.parentNode.removeChild(part);
          return;
        }
        var page = newPage('summary', null, name, inst, pinfo);
        card.subs.push(page);
        var ctx = makeContext(page, part);
        function failed(err) {
          if (page.active) replace(part, el('div', {class: 'muted'}, inst + ': ' + describeError(err)));
        }
        try {
          var result = fn(part, ctx);
          if (result && typeof result.then === 'function') result.then(null, failed);
        } catch (err) {
          failed(err);
        }
      });
    });
    return card;
  }

  function dropCard(card) {
    card.dropped = true;
    card.subs.splice(0).forEach(closePage);
    if (card.node.parentNode) card.node.parentNode.removeChild(card.node);
  }

  /** Keep view.cards in step with the topology: new cards for new (or restarted)
   * endpoints, the others kept (with their sessions and pollers) and moved into place. */
  function syncCards(view, holder, rootName) {
    var root = buildTree(endpointsOf(state.topology));
    var seen = new Set();
    function place(node, parent) {
      seen.add(node.path);
      var card = view.cards.get(node.path);
      var sig = cardSignature(node.entry);
      if (card && card.sig !== sig) { dropCard(card); card = null; }
      if (!card) {
        card = makeCard(view, node.path, node.entry);
        card.sig = sig;
        view.cards.set(node.path, card);
      }
      parent.appendChild(card.node);
      card.node.classList.toggle('has-kids', node.children.size > 0);
      node.children.forEach(function (child) { place(child, card.sub); });
    }
    var start = root;
    if (rootName) {
      rootName.split('.').forEach(function (part) { start = start && start.children.get(part); });
      if (start) place(start, holder);
    } else {
      root.children.forEach(function (node) { place(node, holder); });
    }
    view.cards.forEach(function (card, key) {
      if (!seen.has(key)) { dropCard(card); view.cards.delete(key); }
    });
    return seen.size;
  }

  function showOverview() {
    var view = newPage('overview', 'overview');
    state.view = view;
    view.cards = new Map();
    view.cleanups.push(function () { view.cards.forEach(dropCard); });
    var count = el('span', {class: 'crumbs'});
    var empty = el('div', {class: 'muted', hidden: true},
      'No endpoints connected. Start one with radical-orbit-endpoint (see the README); it appears here by itself.');
    var grid = el('div', {class: 'cards', 'data-testid': 'overview'});
    replace($('page'), pageHead('Overview', null, [count, el('span', {class: 'desc'},
      'Every endpoint on this bridge, live. Dotted names nest under their parent; a card opens its endpoint.')]),
      empty, grid);
    view.onTopology = function () {
      var n = Object.keys(endpointsOf(state.topology)).length;
      count.textContent = n + (n === 1 ? ' endpoint' : ' endpoints') + ' · ' + bridgeUrl();
      empty.hidden = syncCards(view, grid) > 0;
    };
    view.onTopology();
  }

  // ---------------------------------------------------------------- endpoint page
  function showEndpoint(name) {
    var view = newPage('endpoint', 'ep:' + name, name);
    state.view = view;
    view.cards = new Map();
    view.cleanups.push(function () { view.cards.forEach(dropCard); });
    var holder = el('div', {class: 'cards'});
    var details = el('div', {class: 'cards'});
    var missing = el('div', {class: 'error-box', hidden: true},
      'Endpoint "' + name + '" is not connected. This page fills in when it connects.');
    replace($('page'), pageHead(name, 'endpoint', [stateBadge(name), el('span', {class: 'actions'},
      el('button', {type: 'button', class: 'danger', 'data-action': 'disconnect',
                    'aria-label': 'Disconnect endpoint ' + name, onclick: function () { disconnect(name); }},
         'Disconnect…'))]), missing, holder, details);
    var connection = el('section', {class: 'card'}, el('h3', null, 'Connection'));
    view.onTopology = function () {
      var entry = endpointEntry(name);
      missing.hidden = !!entry;
      syncCards(view, holder, name);
      if (!entry) {
        clear(details);
        if (connection.parentNode) connection.parentNode.removeChild(connection);
        return;
      }
      var plugins = pluginsOf(entry);
      var rows = Object.keys(plugins).sort().map(function (inst) {
        var p = obj(plugins[inst]);
        return [el('a', {href: hashFor(name, inst)}, titleOf(inst, p)), el('span', {class: 'mono'}, inst),
                toText(p.type), toText(p.version),
                el('span', {class: 'badge ' + (p.enabled === false ? 'warn' : 'ok')}, p.enabled === false ? 'off' : 'on')];
      });
      var info = obj(entry.endpoint);
      replace(details,
        el('section', {class: 'card wide'}, el('h3', null, 'Plugins'),
          table([{label: 'page'}, {label: 'instance'}, {label: 'type'}, {label: 'version'}, {label: 'enabled'}],
                rows, {empty: 'no plugins loaded'})));
      replace(connection, el('h3', null, 'Connection'), kvTable({
        role: info.role || info.type, host: info.hostname, python: info.python_version,
        'orbit version': info.version, 'bridge sees it at': info.address,
        'connected since': isNum(info.connected_at) ? new Date(info.connected_at * 1000).toLocaleString() : null}));
      holder.appendChild(connection);
    };
    view.onTopology();
  }

  S.showOverview = showOverview;
  S.showEndpoint = showEndpoint;
})();

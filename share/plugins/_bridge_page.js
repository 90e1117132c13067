/* ORBIT Explorer: the bridge page (URL, uptime, its own plugins, the connected
 * endpoints with Disconnect, Terminate behind a confirmation). See _dom.js for how
 * the shell's files fit together.
 */
(function () {
  'use strict';
  var S = window.OrbitExplorerShell;
  var $ = S.$, BRIDGE = S.BRIDGE, SUMMARY_MS = S.SUMMARY_MS, SUMMARY_TIMEOUT_MS = S.SUMMARY_TIMEOUT_MS,
      bridgeUrl = S.bridgeUrl, compareNames = S.compareNames, describeError = S.describeError,
      disconnect = S.disconnect, el = S.el, endpointsOf = S.endpointsOf, fmtDuration = S.fmtDuration,
      fmtTime = S.fmtTime, hashFor = S.hashFor, isNum = S.isNum, kvTable = S.kvTable, newPage = S.newPage,
      obj = S.obj, pageHead = S.pageHead, pluginsOf = S.pluginsOf, replace = S.replace, request = S.request,
      runEvery = S.runEvery, state = S.state, stateBadge = S.stateBadge, table = S.table,
      terminate = S.terminate, titleOf = S.titleOf, toText = S.toText;

  // ---------------------------------------------------------------- bridge page
  function showBridge() {
    var view = newPage('bridge', 'bridge', BRIDGE);
    state.view = view;
    var facts = el('div'), endpoints = el('div'), own = el('div');
    var health = null, healthAt = 0, healthError = null;
    replace($('page'),
      pageHead('Bridge', bridgeUrl(), [stateBadge(BRIDGE), el('span', {class: 'desc'},
        'The bridge this page talks to, the endpoints connected to it, and the controls that act on them.')]),
      el('div', {class: 'cards'},
        el('section', {class: 'card'}, el('h3', null, 'This bridge'), facts),
        el('section', {class: 'card'}, el('h3', null, 'Its own plugins'), own),
        el('section', {class: 'card wide'}, el('h3', null, 'Connected endpoints'), endpoints),
        el('section', {class: 'card wide danger-zone', 'aria-label': 'terminate the bridge'},
          el('h3', null, 'Terminate'),
          el('p', null, 'Stops the bridge at ', el('span', {class: 'mono'}, bridgeUrl()),
             '. Its endpoints keep retrying until a bridge is back on this address; this page reconnects by itself.'),
          el('button', {type: 'button', class: 'danger', id: 'terminate', 'data-action': 'terminate',
                        onclick: terminate}, 'Terminate bridge…'))));
    function drawFacts() {
      var eps = endpointsOf(state.topology);
      replace(facts, kvTable({
        uptime: health ? fmtDuration(health.uptime_s + (Date.now() - healthAt) / 1000)
          : (healthError ? 'unknown (' + healthError + ')' : '…'),
        endpoints: Object.keys(eps).filter(function (k) { return k !== BRIDGE; }).length,
        'event listeners': health ? health.listeners : null,
        'live stream': state.conn
      }));
    }
    runEvery(view, SUMMARY_MS, function () {
      return request('GET', '/health', null, {signal: view.ctl.signal, timeout: SUMMARY_TIMEOUT_MS}).then(function (h) {
        health = obj(h);
        healthAt = Date.now();
        healthError = null;
        if (view.active) drawFacts();
      }, function (err) {
        health = null;
        healthError = describeError(err);
        if (view.active) drawFacts();
      });
    });
    view.onTopology = function () {
      var eps = endpointsOf(state.topology);
      var names = Object.keys(eps).filter(function (k) { return k !== BRIDGE; }).sort(compareNames);
      replace(endpoints, table(
        [{label: 'endpoint'}, {label: 'role'}, {label: 'host'}, {label: 'plugins', num: true},
         {label: 'connected since'}, {label: ''}],
        names.map(function (name) {
          var info = obj(eps[name].endpoint);
          return [el('a', {href: hashFor(name), 'data-bridge-ep': name}, name), toText(info.role || info.type),
                  toText(info.hostname), Object.keys(pluginsOf(eps[name])).length,
                  isNum(info.connected_at) ? fmtTime(new Date(info.connected_at * 1000)) : '—',
                  el('button', {type: 'button', class: 'danger', 'data-action': 'disconnect', 'data-name': name,
                                'aria-label': 'Disconnect endpoint ' + name,
                                onclick: function () { disconnect(name); }}, 'Disconnect…')];
        }), {empty: 'No endpoints connected.'}));
      var mine = pluginsOf(eps[BRIDGE]);
      var inst = Object.keys(mine).sort();
      replace(own, inst.length ? el('ul', null, inst.map(function (i) {
        return el('li', null, el('a', {href: hashFor(BRIDGE, i)}, titleOf(i, mine[i])), ' ',
                  el('span', {class: 'muted mono'}, i));
      })) : el('div', {class: 'muted'}, 'none'));
      drawFacts();
    };
    view.onTopology();
    // "live stream" in the facts follows the indicator
    view.onConn = drawFacts;
  }

  S.showBridge = showBridge;
})();

/* ORBIT Explorer core: login, the shell (tree, drawer, notifications, hash routes),
 * the live event stream, plugin pages and their ctx. The overview and endpoint pages
 * are in _overview.js, the bridge page in _bridge_page.js, the DOM helpers and the HTTP
 * call in _dom.js (see there for how the files fit together).
 *
 * Rule for these files and every plugin module: nothing received from the bridge or
 * an endpoint is ever parsed as HTML. DOM is built with el() (createElement,
 * setAttribute, textContent, appendChild) only; no innerHTML, outerHTML,
 * insertAdjacentHTML or document.write. The page's Content-Security-Policy
 * (script-src 'self') also forbids inline scripts, inline handlers and eval.
 *
 * Plugin modules (share/plugins/<name>.js, named by a plugin's `ui_module`) are
 * classic scripts that call
 *     window.OrbitExplorer.registerPlugin(type, {title, render(container, ctx)})
 * See docs/explorer.md for the ctx contract.
 */
(function () {
  'use strict';
  var S = window.OrbitExplorerShell;
  var $ = S.$, ApiError = S.ApiError, appendChildren = S.appendChildren, arr = S.arr, clear = S.clear,
      describeError = S.describeError, el = S.el, fmtTime = S.fmtTime, obj = S.obj, replace = S.replace,
      request = S.request, toText = S.toText, util = S.util, answerError = S.answerError;

  var VERSION = '1';
  var MAX_NOTES = 200;
  var MAX_NOTE_TEXT = 2000;
  // a plugin's ui_module; names starting with "_" are the Explorer's own files
  var MODULE_RE = /^[a-z][a-z0-9_.]*\.js$/;

  // ---------------------------------------------------------------- state
  var BRIDGE = 'bridge';                // the bridge's own plugins are listed under this name
  var RECONNECT_BASE_MS = 1000;         // first retry after a lost stream; doubles per failure
  var RECONNECT_MAX_MS = 15000;         // ... up to this
  var RECONNECT_TIMEOUT_MS = 10000;     // one reconnect attempt's /endpoint/list
  var SUMMARY_MS = 5000;                // overview cards: one poll per plugin, this long after the last answer
  var SUMMARY_TIMEOUT_MS = 10000;
  var PHONE = '(max-width: 760px)';     // must match the @media rule in index.html

  var state = {
    running: false,          // logged in and showing the app
    topology: null,          // the data of /endpoint/list
    es: null,                // the EventSource
    conn: 'connecting',      // the stream: connecting | live | reconnecting | offline
    everLive: false,
    downSince: null,         // when the stream was lost (Date)
    nextTry: 0,              // Date.now() of the next reconnect attempt
    trying: false,           // a reconnect attempt is in flight
    lastEventId: null,
    backoff: 0,
    reconnectTimer: null,
    connTick: null,          // 1 s timer for the "next try in N s" text
    collapsed: new Set(),    // tree paths the user folded
    view: null,              // the open view: overview, endpoint, bridge or plugin page
    registry: new Map(),     // type -> {title, render, summary}
    modules: new Map(),      // ui_module -> Promise
    noteEndpoints: new Map(),   // endpoint -> notifications kept from it
    notePlugins: new Map()      // plugin -> notifications kept from it
  };

  function showBanner(text, kind) {
    $('banner').className = kind === 'error' ? 'error' : '';
    $('banner-text').textContent = text;
    $('banner').hidden = false;
  }

  function hideBanner() { $('banner').hidden = true; }

  function bridgeUrl() {
    var b = state.topology && state.topology.bridge;
    return b && typeof b.url === 'string' ? b.url : location.origin;
  }

  function hashFor(endpoint, instance) {
    return '#/' + encodeURIComponent(endpoint) + (instance ? '/' + encodeURIComponent(instance) : '');
  }

  // ---------------------------------------------------------------- connection state
  var CONN_TITLES = {
    live: 'receiving live updates from the bridge',
    connecting: 'opening the live event stream',
    reconnecting: 'the live event stream is down; reconnecting by itself',
    offline: 'no network (or logged out): nothing on this page is live'
  };

  /** The one indicator of the event stream; every state badge follows it. */
  function setConn(s, label) {
    state.conn = s;
    var node = $('conn-state');
    node.dataset.state = s;
    node.textContent = label || s;
    node.title = CONN_TITLES[s] || s;
    document.body.dataset.conn = s;
    renderConnBar();
    refreshStateBadges();
    if (state.view && state.view.onConn) state.view.onConn();
  }

  function renderConnBar() {
    var bar = $('connbar');
    var down = state.running && state.conn !== 'live' && (state.everLive || state.reconnectTimer || state.trying);
    if (!down) {
      bar.hidden = true;
      clearInterval(state.connTick);
      state.connTick = null;
      return;
    }
    var text = state.conn === 'offline' ? 'Offline: the browser reports no network.'
      : 'No live connection to the bridge' + (state.downSince ? ' since ' + fmtTime(state.downSince) : '') + '.';
    if (state.trying) {
      text += ' Trying to reconnect now…';
    } else if (state.reconnectTimer) {
      var secs = Math.max(0, Math.ceil((state.nextTry - Date.now()) / 1000));
      text += ' Next try at ' + fmtTime(new Date(state.nextTry)) + ' (in ' + secs + ' s).';
    }
    text += ' Numbers on this page may be out of date.';
    $('conn-detail').textContent = text;
    $('conn-retry').disabled = state.trying;
    bar.className = state.conn === 'offline' ? 'offline' : '';
    bar.hidden = false;
    if (!state.connTick) state.connTick = setInterval(renderConnBar, 1000);
  }

  /** What the page can truthfully say about an endpoint: only a live stream knows. */
  function endpointState(name) {
    if (state.conn !== 'live') {
      return state.conn === 'connecting' && !state.everLive
        ? {cls: '', text: 'checking…', title: 'opening the live stream'}
        : {cls: 'warn', text: 'bridge unreachable',
           title: 'the live stream to the bridge is down: this endpoint\'s state is unknown'};
    }
    if (name === BRIDGE || endpointEntry(name)) {
      return {cls: 'ok', text: 'connected', title: 'connected to the bridge (live)'};
    }
    return {cls: 'bad', text: 'not connected', title: 'not connected to the bridge (live)'};
  }

  function stateBadge(name) {
    var b = el('span', {'data-ep-state': name, 'data-testid': 'ep-state'});
    paintState(b);
    return b;
  }

  function stateDot(name) {
    var d = el('span', {'data-ep-dot': name, role: 'img'});
    paintState(d);
    return d;
  }

  function paintState(node) {
    var dot = node.hasAttribute('data-ep-dot');
    var s = endpointState(dot ? node.getAttribute('data-ep-dot') : node.getAttribute('data-ep-state'));
    node.className = (dot ? 'dot ' : 'badge ') + s.cls;
    node.title = s.title;
    if (dot) node.setAttribute('aria-label', s.text);
    else node.textContent = s.text;
  }

  function refreshStateBadges() {
    var nodes = document.querySelectorAll('[data-ep-state], [data-ep-dot]');
    for (var i = 0; i < nodes.length; i++) paintState(nodes[i]);
  }

  // ---------------------------------------------------------------- login
  function showLogin(message) {
    state.running = false;
    closeStream();
    closeView();
    closeDrawer();
    $('app').hidden = true;
    $('logout').hidden = true;
    $('menu').hidden = true;
    $('notes-toggle').hidden = true;
    clear($('tree'));
    state.topology = null;
    state.everLive = false;
    setConn('offline', 'logged out');
    $('login').hidden = false;
    var msg = $('login-error');
    msg.textContent = message || '';
    msg.hidden = !message;
    $('login-token').focus();
  }

  function onUnauthorized() {
    if (!$('login').hidden) return;
    showLogin(state.running ? 'Your login is no longer valid; log in again.' : '');
  }

  function submitLogin(ev) {
    ev.preventDefault();
    var token = $('login-token').value.trim();
    if (!token) return;
    var button = $('login-submit');
    button.disabled = true;
    request('POST', '/auth', {token: token}, {noLogin: true}).then(function () {
      $('login-token').value = '';
      $('login').hidden = true;
      $('login-error').hidden = true;
      start(true);
    }, function (err) {
      var msg = $('login-error');
      msg.textContent = err.status === 401 ? 'Wrong token.' : 'Login failed: ' + describeError(err);
      msg.hidden = false;
      $('login-token').select();
    }).finally(function () { button.disabled = false; });
  }

  function logout() {
    request('DELETE', '/auth', null, {noLogin: true}).then(function () {
      showLogin('');
    }, function (err) {
      showBanner('Log out failed: ' + describeError(err), 'error');
    });
  }

  // ---------------------------------------------------------------- start
  function start(focusPage) {
    setConn('connecting');
    request('POST', '/endpoint/list').then(function (answer) {
      state.running = true;
      state.backoff = 0;
      hideBanner();
      $('login').hidden = true;
      $('app').hidden = false;
      $('logout').hidden = false;
      $('menu').hidden = false;
      $('notes-toggle').hidden = false;
      applyTopology(answer && answer.data);
      openStream();
      route();
      if (focusPage) focusHeading();
    }, function (err) {
      if (err.loggedOut) return;          // the login panel is up
      setConn('offline');
      showBanner('Cannot load the endpoint list: ' + describeError(err) + ' (retrying)', 'error');
      setTimeout(start, backoffDelay());
    });
  }

  function backoffDelay() {
    var base = Math.min(RECONNECT_MAX_MS, RECONNECT_BASE_MS * Math.pow(2, state.backoff));
    state.backoff = Math.min(state.backoff + 1, 10);
    return Math.round(base * (0.8 + Math.random() * 0.4));
  }

  // ---------------------------------------------------------------- events
  function openStream() {
    closeStream();
    if (!state.running) return;
    // A new EventSource cannot set the Last-Event-ID header itself; the bridge reads
    // ?last_event_id= the same way, so the stream resumes after the last event seen.
    var url = '/events' + (state.lastEventId ? '?last_event_id=' + encodeURIComponent(state.lastEventId) : '');
    var es = new EventSource(url);
    state.es = es;
    setConn(state.everLive ? 'reconnecting' : 'connecting');
    es.addEventListener('open', function () {
      if (state.es !== es) return;
      state.backoff = 0;
      state.everLive = true;
      state.downSince = null;
      setConn('live');
    });
    es.addEventListener('message', function (ev) {
      if (state.es !== es) return;
      if (ev.lastEventId) state.lastEventId = ev.lastEventId;
      var msg;
      try { msg = JSON.parse(ev.data); } catch (e) { return; }
      if (!msg || typeof msg !== 'object') return;
      if (msg.topic === 'topology') applyTopology(msg.data);
      else if (msg.topic === 'notification') onNotification(msg.data);
    });
    es.addEventListener('error', function () {
      if (state.es !== es) return;
      // The page reconnects itself rather than leaving it to the browser: so it knows,
      // and can show, when the next try is, and re-reads the endpoint list first (which
      // also tells a lost login, 401 -> login view, from a bridge that is down).
      es.close();
      state.es = null;
      if (!state.downSince) state.downSince = new Date();
      scheduleReconnect();
    });
  }

  function closeStream() {
    clearTimeout(state.reconnectTimer);
    state.reconnectTimer = null;
    if (state.es) {
      state.es.close();
      state.es = null;
    }
  }

  function scheduleReconnect() {
    clearTimeout(state.reconnectTimer);
    var wait = backoffDelay();
    state.nextTry = Date.now() + wait;
    state.reconnectTimer = setTimeout(reconnectNow, wait);
    setConn(navigator.onLine === false ? 'offline' : 'reconnecting');
  }

  function reconnectNow() {
    clearTimeout(state.reconnectTimer);
    state.reconnectTimer = null;
    if (!state.running || state.trying || state.es) return;
    state.trying = true;
    renderConnBar();
    request('POST', '/endpoint/list', null, {timeout: RECONNECT_TIMEOUT_MS}).then(function (answer) {
      state.trying = false;
      if (!state.running) return;
      applyTopology(answer && answer.data);
      openStream();
    }, function (err) {
      state.trying = false;
      if (!err.loggedOut && state.running) scheduleReconnect();
    });
  }

  // ---------------------------------------------------------------- topology & tree
  function endpointsOf(topology) {
    var eps = topology && topology.endpoints;
    return eps && typeof eps === 'object' ? eps : {};
  }

  /** table[key] only if the table has it as its own: a name from the address bar such as
   * "constructor" or "__proto__" must not find Object's members. */
  function ownValue(table, key) {
    return table && Object.prototype.hasOwnProperty.call(table, key) ? table[key] : null;
  }

  /** The topology entry of an endpoint, or null. */
  function endpointEntry(name) { return ownValue(endpointsOf(state.topology), name); }

  function pluginInfo(endpoint, instance) {
    var ep = endpointEntry(endpoint);
    return ep ? ownValue(ep.plugins, instance) : null;
  }

  function pluginsOf(entry) {
    return entry && entry.plugins && typeof entry.plugins === 'object' ? entry.plugins : {};
  }

  function titleOf(instance, info) {
    var cfg = info && info.ui_config && typeof info.ui_config === 'object' ? info.ui_config : {};
    return typeof cfg.title === 'string' && cfg.title ? cfg.title : instance;
  }

  function applyTopology(data) {
    if (!data || typeof data !== 'object') return;
    state.topology = data;
    $('bridge-url').textContent = bridgeUrl();
    renderTree();
    refreshStateBadges();
    var view = state.view;
    if (view && view.onTopology) view.onTopology();
    else if (!view) route();
  }

  function compareNames(a, b) {
    if (a === BRIDGE) return -1;
    if (b === BRIDGE) return 1;
    return a < b ? -1 : (a > b ? 1 : 0);
  }

  /** Dotted names nest: hpc1.login and hpc1.compute sit under hpc1. */
  function buildTree(endpoints) {
    var root = {children: new Map()};
    Object.keys(endpoints).sort(compareNames).forEach(function (name) {
      var node = root, path = '';
      name.split('.').forEach(function (part) {
        path = path ? path + '.' + part : part;
        if (!node.children.has(part)) {
          node.children.set(part, {label: part, path: path, entry: null, children: new Map()});
        }
        node = node.children.get(part);
      });
      node.entry = endpoints[name];
    });
    return root;
  }

  function renderTree() {
    var endpoints = endpointsOf(state.topology);
    var names = Object.keys(endpoints);
    $('tree-count').textContent = String(names.length);
    markNav();
    var tree = $('tree');
    if (!names.length) {
      replace(tree, el('div', {class: 'tree-empty'}, 'No endpoints connected.'));
      return;
    }
    var root = buildTree(endpoints);
    replace(tree, el('ul', {'aria-label': 'endpoints'}, Array.from(root.children.values()).map(renderNode)));
  }

  function renderNode(node) {
    var entry = node.entry;
    var plugins = pluginsOf(entry);
    var instances = Object.keys(plugins).sort();
    var hasKids = node.children.size > 0 || instances.length > 0;
    var collapsed = state.collapsed.has(node.path);
    var meta = [];
    if (entry && entry.endpoint) {
      if (entry.endpoint.type) meta.push(String(entry.endpoint.type));
      if (entry.endpoint.hostname) meta.push(String(entry.endpoint.hostname));
    }
    var view = state.view;
    var here = view && !view.instance && view.endpoint === node.path;
    var row = el('div', {class: 'node-row' + (here ? ' selected' : '')},
      el('button', {class: 'caret', type: 'button', 'aria-expanded': hasKids ? String(!collapsed) : null,
                    'aria-label': (collapsed ? 'expand ' : 'collapse ') + node.path, tabindex: hasKids ? null : '-1',
                    onclick: function () {
                      if (state.collapsed.has(node.path)) state.collapsed.delete(node.path);
                      else state.collapsed.add(node.path);
                      renderTree();
                      var again = $('tree').querySelector('[data-caret="' + cssEscape(node.path) + '"]');
                      if (again) again.focus();
                    }, 'data-caret': node.path}, hasKids ? (collapsed ? '▸' : '▾') : ''),
      entry ? stateDot(node.path) : null,
      entry
        ? el('a', {class: 'name', href: hashFor(node.path), title: node.path, 'data-endpoint-link': node.path,
                   'aria-current': here ? 'page' : null}, node.label)
        : el('span', {class: 'group-name', title: node.path}, node.label),
      el('span', {class: 'meta', title: meta.join(' · ')}, meta.join(' · ')));
    var kids = null;
    if (hasKids && !collapsed) {
      kids = el('ul', null,
        instances.map(function (inst) { return renderPluginLink(node.path, inst, plugins[inst]); }),
        Array.from(node.children.values()).map(renderNode));
    }
    return el('li', {'data-endpoint': entry ? node.path : null, 'data-group': entry ? null : node.path}, row, kids);
  }

  function cssEscape(text) {
    return window.CSS && CSS.escape ? CSS.escape(text) : String(text).replace(/["\\]/g, '\\$&');
  }

  function renderPluginLink(endpoint, instance, info) {
    info = info || {};
    var title = titleOf(instance, info);
    var view = state.view;
    var selected = view && view.endpoint === endpoint && view.instance === instance;
    var cls = 'plugin-link' + (selected ? ' selected' : '') + (info.enabled === false ? ' disabled' : '');
    return el('li', null, el('a', {
      class: cls, href: hashFor(endpoint, instance), 'data-plugin': endpoint + '/' + instance,
      'aria-current': selected ? 'page' : null,
      title: (info.type || instance) + (info.version ? ' ' + info.version : '') +
             (info.enabled === false ? ' (not enabled on this host)' : '')
    }, el('span', null, title), title !== instance ? el('span', {class: 'inst'}, instance) : null));
  }

  function markNav() {
    var kind = state.view ? state.view.kind : null;
    var links = document.querySelectorAll('#views a[data-view]');
    for (var i = 0; i < links.length; i++) {
      if (links[i].getAttribute('data-view') === kind) links[i].setAttribute('aria-current', 'page');
      else links[i].removeAttribute('aria-current');
    }
  }

  // ---------------------------------------------------------------- drawer (phone width)
  function isPhone() { return window.matchMedia(PHONE).matches; }

  function openDrawer() {
    document.body.classList.add('drawer-open');
    $('menu').setAttribute('aria-expanded', 'true');
    $('right').inert = true;     // the page behind the scrim takes no focus or clicks
    var first = document.querySelector('#views a');
    // the drawer becomes visible with the class; focus it on the next frame
    setTimeout(function () { if (first) first.focus(); }, 0);
  }

  function closeDrawer(returnFocus) {
    if (!document.body.classList.contains('drawer-open')) return;
    document.body.classList.remove('drawer-open');
    $('menu').setAttribute('aria-expanded', 'false');
    $('right').inert = false;
    if (returnFocus) $('menu').focus();
  }

  // ---------------------------------------------------------------- actions
  function disconnect(name) {
    if (!window.confirm('Disconnect endpoint "' + name + '"?\n\nIt shuts down and does not reconnect.')) return;
    request('POST', '/endpoint/disconnect/' + encodeURIComponent(name)).then(function () {
      showBanner('Endpoint ' + name + ' was asked to shut down.');
    }, function (err) {
      showBanner('Disconnect ' + name + ' failed: ' + describeError(err), 'error');
    });
  }

  function terminate() {
    var url = bridgeUrl();
    if (!window.confirm('Terminate the bridge at ' + url + '?\n\nEvery endpoint loses it; they keep retrying ' +
                        'until a bridge is back on this address. This page reconnects by itself.')) return;
    request('POST', '/bridge/terminate').then(function () {
      showBanner('The bridge at ' + url + ' is terminating.');
    }, function (err) {
      showBanner('Terminate failed: ' + describeError(err), 'error');
    });
  }

  // ---------------------------------------------------------------- notifications
  var pageNoteListeners = new Set();

  function onNotification(n) {
    if (!n || typeof n !== 'object') return;
    var list = $('notifications');
    var ep = toText(n.endpoint), plugin = toText(n.plugin);
    var text = toText(n.data);
    if (text.length > MAX_NOTE_TEXT) text = text.slice(0, MAX_NOTE_TEXT) + ' …';
    var li = el('li', {'data-ep': ep, 'data-from': plugin},
      el('span', {class: 't'}, fmtTime()),
      el('span', {class: 'src'}, ep + '/' + plugin),
      el('span', {class: 'topic'}, toText(n.topic)),
      el('span', {class: 'data'}, text));
    li.hidden = !noteShown(li);
    list.insertBefore(li, list.firstChild);
    countNoteSource(li, 1);
    while (list.children.length > MAX_NOTES) countNoteSource(list.removeChild(list.lastChild), -1);
    updateNotesCount(true);
    pageNoteListeners.forEach(function (fn) {
      try { fn(n); } catch (err) { console.error('notification listener failed', err); }
    });
  }

  function noteShown(li) {
    var ep = $('notes-endpoint').value, plugin = $('notes-plugin').value;
    return (!ep || li.getAttribute('data-ep') === ep) && (!plugin || li.getAttribute('data-from') === plugin);
  }

  /** The filter menus list the sources of the notifications kept (at most MAX_NOTES),
   * counted as they come and go: a flood from ever new sources keeps them bounded. */
  function countNoteSource(li, delta) {
    if (countIn(state.noteEndpoints, li.getAttribute('data-ep'), delta)) {
      fillFilter('notes-endpoint', state.noteEndpoints, 'all endpoints');
    }
    if (countIn(state.notePlugins, li.getAttribute('data-from'), delta)) {
      fillFilter('notes-plugin', state.notePlugins, 'all plugins');
    }
  }

  /** counts[key] += delta; true when the key came or went. */
  function countIn(counts, key, delta) {
    var n = (counts.get(key) || 0) + delta;
    if (n > 0) counts.set(key, n);
    else counts.delete(key);
    return n === delta || n <= 0;
  }

  function fillFilter(id, values, allLabel) {
    var select = $(id), keep = select.value;
    replace(select, el('option', {value: ''}, allLabel), Array.from(values.keys()).sort().map(function (v) {
      return el('option', {value: v}, v);
    }));
    select.value = values.has(keep) ? keep : '';
    if (select.value !== keep) filterNotes();    // the chosen source is gone: show all
  }

  function filterNotes() {
    var items = $('notifications').children;
    for (var i = 0; i < items.length; i++) items[i].hidden = !noteShown(items[i]);
    updateNotesCount(false);
  }

  function updateNotesCount(fresh) {
    var items = $('notifications').children, shown = 0;
    for (var i = 0; i < items.length; i++) if (!items[i].hidden) shown++;
    var count = $('notes-count');
    count.textContent = String(items.length);
    if (fresh && $('notes').hidden) count.classList.add('fresh');
    $('notes-toggle').setAttribute('aria-label', 'Notifications (' + items.length + ')');
    var empty = $('notes-empty');
    empty.hidden = shown > 0;
    empty.textContent = items.length ? 'No notifications from this endpoint and plugin.' : 'No notifications yet.';
  }

  function clearNotes() {
    clear($('notifications'));
    state.noteEndpoints.clear();
    state.notePlugins.clear();
    fillFilter('notes-endpoint', state.noteEndpoints, 'all endpoints');
    fillFilter('notes-plugin', state.notePlugins, 'all plugins');
    updateNotesCount(false);
  }

  function toggleNotes(open) {
    var notes = $('notes');
    notes.hidden = open === undefined ? !notes.hidden : !open;
    $('notes-toggle').setAttribute('aria-expanded', String(!notes.hidden));
    if (!notes.hidden) {
      $('notes-count').classList.remove('fresh');
      $('notes-endpoint').focus();
    }
  }

  // ---------------------------------------------------------------- plugin modules
  function registerPlugin(type, spec) {
    if (typeof type !== 'string' || !type) throw new Error('registerPlugin: type must be a string');
    if (!spec || typeof spec.render !== 'function') throw new Error('registerPlugin: spec.render must be a function');
    state.registry.set(type, {title: spec.title || type, render: spec.render,
                              summary: typeof spec.summary === 'function' ? spec.summary : null});
  }

  function loadModule(name) {
    if (typeof name !== 'string' || !MODULE_RE.test(name)) {
      return Promise.reject(new Error('invalid Explorer module name ' + JSON.stringify(name)));
    }
    return loadScript(name);
  }

  /** /plugins/<name> as a classic script, once. */
  function loadScript(name) {
    if (!state.modules.has(name)) {
      state.modules.set(name, new Promise(function (resolve, reject) {
        var s = document.createElement('script');
        s.src = '/plugins/' + name;
        s.async = true;
        s.addEventListener('load', function () { resolve(); });
        s.addEventListener('error', function () {
          state.modules.delete(name);   // allow a later retry
          if (s.parentNode) s.parentNode.removeChild(s);
          reject(new Error('could not load /plugins/' + name));
        });
        document.head.appendChild(s);
      }));
    }
    return state.modules.get(name);
  }

  /** The renderer for a plugin, loading its ui_module once; null -> generic page. */
  function rendererFor(info) {
    var known = state.registry.get(info.type);
    if (known) return Promise.resolve({renderer: known});
    if (!info.ui_module) return Promise.resolve({renderer: null, reason: null});
    return loadModule(info.ui_module).then(function () {
      var r = state.registry.get(info.type);
      return r ? {renderer: r}
        : {renderer: null, reason: info.ui_module + ' did not register a page for type "' + info.type + '"'};
    }, function (err) {
      return {renderer: null, reason: describeError(err)};
    });
  }

  // ---------------------------------------------------------------- views and routes
  /** The hash names the view: #/ overview, #/bridge, #/<endpoint>, #/<endpoint>/<instance>.
   * Returns null for a hash that is not a route (an in-page anchor). */
  function parseHash(hash) {
    if (!hash || hash === '#' || hash === '#/') return {kind: 'overview', key: 'overview'};
    if (hash.slice(0, 2) !== '#/') return null;
    var parts;
    try {
      parts = hash.slice(2).split('/').map(decodeURIComponent);
    } catch (e) {
      return {kind: 'overview', key: 'overview'};
    }
    if (parts.length === 1 && parts[0] === BRIDGE) return {kind: 'bridge', key: 'bridge'};
    if (parts.length === 1 && parts[0]) return {kind: 'endpoint', endpoint: parts[0], key: 'ep:' + parts[0]};
    if (parts.length === 2 && parts[0] && parts[1]) {
      return {kind: 'plugin', endpoint: parts[0], instance: parts[1], key: 'plugin:' + parts[0] + '/' + parts[1]};
    }
    return {kind: 'overview', key: 'overview'};
  }

  function route(focus) {
    if (!state.running || !state.topology) return;
    var r = parseHash(location.hash);
    if (!r) return;
    if (state.view && state.view.key === r.key) return;
    closeView();
    if (r.kind === 'overview') S.showOverview();
    else if (r.kind === 'bridge') S.showBridge();
    else if (r.kind === 'endpoint') S.showEndpoint(r.endpoint);
    else openPlugin(r.endpoint, r.instance);
    renderTree();
    closeDrawer();
    if (focus) focusHeading();
  }

  /** After a navigation the keyboard focus goes to the new view's heading. */
  function focusHeading() {
    var h = $('page').querySelector('h2');
    if (h) h.focus();
  }

  /** A view or a sub-page (an overview card's live part): what closePage() ends. */
  function newPage(kind, key, endpoint, instance, info) {
    return {
      kind: kind, key: key, endpoint: endpoint || null, instance: instance || null, info: info || null,
      active: true, ctl: new AbortController(), cleanups: [], sidPromise: null, sid: null,
      base: '/' + encodeURIComponent(endpoint || '') + '/' + encodeURIComponent(instance || '') + '/'
    };
  }

  function closeView() {
    var view = state.view;
    state.view = null;
    if (view) closePage(view);
  }

  function closePage(page) {
    if (!page.active) return;
    page.active = false;
    page.ctl.abort();
    pageNoteListeners.forEach(function (fn) { if (fn.page === page) pageNoteListeners.delete(fn); });
    page.cleanups.splice(0).forEach(function (fn) {
      try { fn(); } catch (err) { console.error('cleanup failed', err); }
    });
    if (page.sidPromise) {
      page.sidPromise.then(function (sid) {
        // best effort: the endpoint may be gone already
        // keepalive: this also runs as the tab closes, and must outlive it
        request('POST', page.base + 'unregister_session/' + encodeURIComponent(sid), null,
                {noLogin: true, keepalive: true}).catch(function () {});
      }, function () {});
    }
  }

  /** fn now, then ms after each run finishes (waits for its Promise), while the page is open. */
  function runEvery(page, ms, fn) {
    var timer = null, stopped = false;
    function tick() {
      if (stopped || !page.active) return;
      var run = document.hidden ? Promise.resolve() : Promise.resolve().then(fn);
      run.then(null, function (err) {
        if (page.active) console.error('periodic task failed', err);
      }).then(function () {
        if (!stopped && page.active) timer = setTimeout(tick, ms);
      });
    }
    function stop() { stopped = true; clearTimeout(timer); }
    page.cleanups.push(stop);
    tick();
    return stop;
  }

  function pageHead(title, crumbs, extra) {
    return el('div', {id: 'page-head'}, el('h2', {tabindex: '-1'}, title),
              crumbs ? el('span', {class: 'crumbs'}, crumbs) : null, extra);
  }

  // ---------------------------------------------------------------- plugin pages
  function openPlugin(endpoint, instance) {
    var info = pluginInfo(endpoint, instance);
    var page = newPage('plugin', 'plugin:' + endpoint + '/' + instance, endpoint, instance, info);
    state.view = page;
    var cfg = obj(info && info.ui_config);
    var body = el('div', {class: 'plugin-body', 'data-plugin-page': endpoint + '/' + instance});
    replace($('page'),
      pageHead(titleOf(instance, info), endpoint + ' / ' + instance, [
        info ? el('span', {class: 'badge info'}, toText(info.type) + (info.version ? ' ' + toText(info.version) : '')) : null,
        stateBadge(endpoint),
        typeof cfg.description === 'string' ? el('span', {class: 'desc'}, cfg.description) : null]),
      body);
    page.onTopology = function () {
      var now = pluginInfo(endpoint, instance);
      if (now && page.waiting) {
        // it was not there when the page opened: open it properly now
        closeView();
        openPlugin(endpoint, instance);
        renderTree();
        return;
      }
      if (now) page.info = now;
    };
    if (!info) {
      appendChildren(body, el('div', {class: 'error-box'},
        'No plugin "' + instance + '" on endpoint "' + endpoint + '" (not connected). This page opens ' +
        'when it appears.'));
      page.waiting = true;
      return;
    }
    var ctx = makeContext(page, body);
    rendererFor(info).then(function (found) {
      if (!page.active) return;
      if (found.renderer) {
        try {
          var result = found.renderer.render(body, ctx);
          if (result && typeof result.then === 'function') {
            result.then(null, function (err) { pageCrashed(page, body, ctx, err); });
          }
        } catch (err) {
          pageCrashed(page, body, ctx, err);
        }
      } else {
        renderGeneric(body, ctx, found.reason);
      }
    });
  }

  function pageCrashed(page, body, ctx, err) {
    if (!page.active) return;
    console.error('plugin page failed', err);
    replace(body, el('div', {class: 'error-box'}, 'This plugin page failed: ' + describeError(err) +
                     '\nShowing the generic page instead.'));
    renderGeneric(body, ctx, null, true);
  }

  function makeContext(page, container) {
    function sessionRelated(err) {
      // 410: the session expired. 404 counts only while the plugin is listed: a 404
      // for an endpoint that is away says nothing about the session.
      return err instanceof ApiError && (err.status === 410 ||
        (err.status === 404 && !!pluginInfo(page.endpoint, page.instance)));
    }
    var ctx = {
      endpoint: page.endpoint,
      instance: page.instance,
      container: container,
      get info() { return page.info; },
      get active() { return page.active; },
      /** method, path relative to /<endpoint>/<instance>/, optional JSON body. */
      api: function (method, relPath, body, opts) {
        if (!page.active) return Promise.reject(new ApiError(0, 'the page was closed', relPath));
        var o = Object.assign({}, opts || {}, {signal: page.ctl.signal, noLogin: false});
        var path = page.base + String(relPath || '').replace(/^\/+/, '');
        return request(method, path, body, o).then(null, function (err) {
          var sid = page.sid;
          if (sid && sessionRelated(err) &&
              (path.indexOf(sid) >= 0 || path.indexOf(encodeURIComponent(sid)) >= 0)) {
            page.sidPromise = null;   // the next session() registers a new one
            page.sid = null;
          }
          throw err;
        });
      },
      /** method, a path from the bridge's root (another plugin of this endpoint, the
       * endpoint list), optional JSON body: as api(), but not aborted when the page
       * closes (a session it registered there must still be unregistered). */
      call: function (method, path, body, opts) {
        return request(method, path, body, Object.assign({}, opts || {}, {noLogin: false}));
      },
      /** The page's session id: registered on first use, again after a 404/410. */
      session: function (opts) {
        if (opts && opts.renew) { page.sidPromise = null; page.sid = null; }
        if (!page.sidPromise) {
          if (!page.active) return Promise.reject(new ApiError(0, 'the page was closed', 'register_session'));
          // Not aborted when the page closes: a session the endpoint made must reach
          // closePage(), which unregisters it, or it would be left behind.
          var p = request('POST', page.base + 'register_session').then(function (answer) {
            if (!answer || typeof answer.sid !== 'string') throw new ApiError(0, 'register_session gave no sid', 'register_session');
            if (page.sidPromise === p) page.sid = answer.sid;
            return answer.sid;
          });
          p.catch(function () { if (page.sidPromise === p) page.sidPromise = null; });
          page.sidPromise = p;
        }
        return page.sidPromise;
      },
      /** fn(sid) -> Promise; retried once with a new session on 404/410. */
      withSession: function (fn) {
        return ctx.session().then(function (sid) {
          return Promise.resolve().then(function () { return fn(sid); }).then(null, function (err) {
            if (!sessionRelated(err) || !page.active) throw err;
            if (page.sid === sid) { page.sidPromise = null; page.sid = null; }
            return ctx.session().then(fn);
          });
        });
      },
      /** cb({endpoint, plugin, topic, data}) for this endpoint + plugin; returns unsubscribe. */
      onNotification: function (cb) {
        var fn = function (n) {
          if (page.active && n.endpoint === page.endpoint && n.plugin === page.instance) cb(n);
        };
        fn.page = page;
        pageNoteListeners.add(fn);
        return function () { pageNoteListeners.delete(fn); };
      },
      /** cb() when the user leaves the page. */
      onCleanup: function (cb) {
        if (typeof cb === 'function') page.cleanups.push(cb);
      },
      /** Run fn now and again ms after each run finishes, until the page closes. */
      every: function (ms, fn) { return runEvery(page, ms, fn); },
      el: el,
      util: util
    };
    return ctx;
  }

  // ---------------------------------------------------------------- generic pages
  var GENERIC = '_generic';     // the registry key _generic.js registers under

  /** For plugins without an Explorer module: the page _generic.js builds from the
   * plugin's ui_config (loaded the first time one is shown). */
  function renderGeneric(container, ctx, reason, keep) {
    if (!keep) clear(container);
    loadScript('_generic.js').then(function () {
      var generic = state.registry.get(GENERIC);
      if (!generic) throw new Error('_generic.js registered no page');
      if (ctx.active) generic.render(container, ctx, reason);
    }).then(null, function (err) {
      if (ctx.active) {
        appendChildren(container, el('div', {class: 'error-box'}, 'Cannot show the generic page: ' + describeError(err)));
      }
    });
  }

  // what the overview, endpoint and bridge pages (_overview.js, _bridge_page.js) use
  Object.assign(S, {BRIDGE: BRIDGE, SUMMARY_MS: SUMMARY_MS, SUMMARY_TIMEOUT_MS: SUMMARY_TIMEOUT_MS, bridgeUrl: bridgeUrl, buildTree: buildTree, closePage: closePage, compareNames: compareNames, disconnect: disconnect, endpointEntry: endpointEntry, endpointsOf: endpointsOf, hashFor: hashFor, loadModule: loadModule, makeContext: makeContext, newPage: newPage, ownValue: ownValue, pageHead: pageHead, pluginsOf: pluginsOf, runEvery: runEvery, state: state, stateBadge: stateBadge, terminate: terminate, titleOf: titleOf, onUnauthorized: onUnauthorized});

  // ---------------------------------------------------------------- boot
  window.OrbitExplorer = Object.freeze({
    version: VERSION,
    registerPlugin: registerPlugin,
    el: el,
    util: util,
    ApiError: ApiError,
    /** answerError(status, header, text, path): the ApiError of a failed answer a page
     * got by itself (an XHR upload); the bridge's own 401 shows the login view. */
    answerError: function (status, header, text, path) { return answerError(status, header, text, path); },
    /** ownValue(table, key): table[key] if it is the table's own, else null. */
    ownValue: ownValue,
    /** The stream's state: 'live', 'connecting', 'reconnecting' or 'offline'. */
    connection: function () { return state.conn; }
  });

  function boot() {
    $('login-form').addEventListener('submit', submitLogin);
    $('logout').addEventListener('click', logout);
    $('banner-close').addEventListener('click', hideBanner);
    $('conn-retry').addEventListener('click', reconnectNow);
    $('notes-clear').addEventListener('click', clearNotes);
    $('notes-toggle').addEventListener('click', function () { toggleNotes(); });
    $('notes-close').addEventListener('click', function () { toggleNotes(false); $('notes-toggle').focus(); });
    $('notes-endpoint').addEventListener('change', filterNotes);
    $('notes-plugin').addEventListener('change', filterNotes);
    $('menu').addEventListener('click', function () {
      if (document.body.classList.contains('drawer-open')) closeDrawer(true);
      else openDrawer();
    });
    $('scrim').addEventListener('click', function () { closeDrawer(true); });
    $('skip').addEventListener('click', function (ev) {
      ev.preventDefault();
      $('page').focus();
    });
    document.addEventListener('keydown', function (ev) {
      if (ev.key !== 'Escape') return;
      if (document.body.classList.contains('drawer-open')) closeDrawer(true);
      else if (!$('notes').hidden && $('notes').contains(document.activeElement)) {
        toggleNotes(false);
        $('notes-toggle').focus();
      }
    });
    window.matchMedia(PHONE).addEventListener('change', function () { if (!isPhone()) closeDrawer(); });
    window.addEventListener('online', function () { if (state.running && !state.es) reconnectNow(); });
    window.addEventListener('offline', function () {
      // no network: the stream cannot be live, whatever the socket has not noticed yet
      if (!state.running) return;
      closeStream();
      if (!state.downSince) state.downSince = new Date();
      scheduleReconnect();
    });
    // leaving the page (closing the tab, or going to another site) ends the view's sessions;
    // coming back to it from the browser's cache opens the view again
    window.addEventListener('pagehide', closeView);
    window.addEventListener('pageshow', function (ev) { if (ev.persisted) route(); });
    window.addEventListener('hashchange', function () {
      if (location.hash === '#login-failed') return;
      route(true);
    });
    $('bridge-url').textContent = location.origin;
    clearNotes();
    if (location.hash === '#login-failed') {
      history.replaceState(null, '', location.pathname);
      showLogin('Wrong token in the login link.');
      return;
    }
    start();
  }

  // after every file of the shell has run (they are deferred scripts, run before this event)
  if (document.readyState === 'complete') boot();
  else document.addEventListener('DOMContentLoaded', boot);
})();

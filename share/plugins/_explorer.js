/* ORBIT Explorer core: login, endpoint tree, live event stream, plugin pages.
 *
 * Rule for this file and every plugin module: nothing received from the bridge or
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

  var VERSION = '1';
  var API_TIMEOUT_MS = 30000;
  var MAX_NOTES = 200;
  var MAX_NOTE_TEXT = 2000;
  // a plugin's ui_module; names starting with "_" are the Explorer's own files
  var MODULE_RE = /^[a-z][a-z0-9_.]*\.js$/;
  var UNSAFE_URL = /^\s*(javascript|vbscript|data:text)/i;

  function $(id) { return document.getElementById(id); }

  // ---------------------------------------------------------------- DOM helpers
  /** el(tag, attrs, ...children): attrs values are set with setAttribute (or as
   * properties for value/checked/disabled/selected); functions under on<event>
   * keys become listeners; `class`, `dataset` and `style` (an object) are
   * supported. Children: strings and numbers become text nodes, Nodes are
   * appended, arrays are flattened, null/undefined/false are skipped. */
  function el(tag, attrs) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (key) {
        var value = attrs[key];
        if (value === null || value === undefined || value === false) return;
        if (/^on/i.test(key)) {
          if (typeof value === 'function') node.addEventListener(key.slice(2).toLowerCase(), value);
          return;   // never an inline handler string
        }
        if (key === 'innerHTML' || key === 'outerHTML' || key === 'srcdoc') {
          throw new Error('el(): ' + key + ' is not allowed');
        }
        if (key === 'class' || key === 'className') { node.className = String(value); return; }
        if (key === 'text') { node.textContent = String(value); return; }
        if (key === 'dataset') {
          Object.keys(value).forEach(function (k) { node.dataset[k] = String(value[k]); });
          return;
        }
        if (key === 'style' && typeof value === 'object') {
          Object.keys(value).forEach(function (k) { node.style[k] = value[k]; });
          return;
        }
        if (key === 'value' || key === 'checked' || key === 'disabled' || key === 'selected') {
          node[key] = value;
          return;
        }
        if ((key === 'href' || key === 'src' || key === 'action' || key === 'formaction') &&
            UNSAFE_URL.test(String(value))) {
          return;
        }
        node.setAttribute(key, value === true ? '' : String(value));
      });
    }
    for (var i = 2; i < arguments.length; i++) appendChildren(node, arguments[i]);
    return node;
  }

  function appendChildren(node, child) {
    if (child === null || child === undefined || child === false) return node;
    if (Array.isArray(child)) {
      child.forEach(function (c) { appendChildren(node, c); });
    } else if (child instanceof Node) {
      node.appendChild(child);
    } else {
      node.appendChild(document.createTextNode(String(child)));
    }
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
    return node;
  }

  /** Replace all children of node (text only, or Nodes built with el()). */
  function replace(node) {
    clear(node);
    for (var i = 1; i < arguments.length; i++) appendChildren(node, arguments[i]);
    return node;
  }

  // ---------------------------------------------------------------- formatting
  function isNum(v) { return typeof v === 'number' && isFinite(v); }

  function fmtBytes(n) {
    if (!isNum(n)) return '—';
    var units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];
    var i = 0, v = Math.abs(n);
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    var digits = i === 0 ? 0 : (v < 10 ? 2 : (v < 100 ? 1 : 0));
    return (n < 0 ? '-' : '') + v.toFixed(digits) + ' ' + units[i];
  }

  function fmtDuration(s) {
    if (!isNum(s)) return '—';
    s = Math.max(0, Math.floor(s));
    var d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    if (d) return d + ' d ' + h + ' h';
    if (h) return h + ' h ' + m + ' min';
    if (m) return m + ' min';
    return s + ' s';
  }

  function fmtPercent(p) { return isNum(p) ? (Math.round(p * 10) / 10) + ' %' : '—'; }

  function fmtTime(date) {
    var d = date || new Date();
    function two(x) { return x < 10 ? '0' + x : String(x); }
    return two(d.getHours()) + ':' + two(d.getMinutes()) + ':' + two(d.getSeconds());
  }

  /** Any value as display text: strings as they are, the rest as JSON. */
  function toText(value, indent) {
    if (value === null || value === undefined) return '—';
    if (typeof value === 'string') return value;
    try {
      return JSON.stringify(value, null, indent);
    } catch (err) {
      return String(value);
    }
  }

  /** A horizontal bar for a percentage (0-100); colour steps at 75 and 90. */
  function bar(percent, title) {
    var p = isNum(percent) ? Math.max(0, Math.min(100, percent)) : 0;
    var cls = 'bar' + (p >= 90 ? ' crit' : (p >= 75 ? ' hi' : ''));
    return el('div', {class: cls, title: title || fmtPercent(percent), role: 'meter',
                      'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': p},
              el('span', {style: {width: p + '%'}}));
  }

  /** A key/value table; object values are shown as JSON text. */
  function kvTable(obj, opts) {
    opts = opts || {};
    var keys = obj && typeof obj === 'object' ? Object.keys(obj) : [];
    if (!keys.length) return el('div', {class: 'muted'}, opts.empty || '(empty)');
    return el('table', {class: 'kv'}, el('tbody', null, keys.map(function (key) {
      var value = obj[key];
      var cell = (value !== null && typeof value === 'object')
        ? el('pre', {class: 'json'}, toText(value, 2))
        : toText(value);
      return el('tr', null, el('th', {scope: 'row'}, key), el('td', null, cell));
    })));
  }

  /** table([{label, num}], rows): rows are arrays of cell contents (text or Nodes). */
  function table(columns, rows, opts) {
    opts = opts || {};
    if (!rows.length && opts.empty) return el('div', {class: 'muted'}, opts.empty);
    return el('table', {class: 'grid'},
      el('thead', null, el('tr', null, columns.map(function (c) {
        return el('th', {class: c.num ? 'num' : null, scope: 'col'}, c.label);
      }))),
      el('tbody', null, rows.map(function (row) {
        return el('tr', null, row.map(function (cell, i) {
          var c = columns[i] || {};
          return el('td', {class: c.num ? 'num' : null}, cell);
        }));
      })));
  }

  var util = {
    el: el, clear: clear, replace: replace, bar: bar, kvTable: kvTable, table: table,
    fmtBytes: fmtBytes, fmtDuration: fmtDuration, fmtPercent: fmtPercent, fmtTime: fmtTime,
    toText: toText, seg: encodeURIComponent, describeError: describeError
  };

  // ---------------------------------------------------------------- HTTP
  function ApiError(status, detail, path, body) {
    this.name = 'ApiError';
    this.status = status;
    this.detail = detail;
    this.path = path;
    this.body = body;
    this.message = (status ? 'HTTP ' + status + ': ' : '') + detail;
  }
  ApiError.prototype = Object.create(Error.prototype);
  ApiError.prototype.constructor = ApiError;

  function describeError(err) {
    if (!err) return 'unknown error';
    if (err instanceof ApiError) return err.message;
    if (err.name === 'AbortError') return 'cancelled';
    return String(err.message || err);
  }

  /** JSON request to the bridge with the same-origin cookie. Resolves to the
   * parsed JSON (or text for non-JSON answers); rejects with ApiError carrying
   * the error envelope's status_code and detail. A 401 shows the login panel. */
  function request(method, path, body, opts) {
    opts = opts || {};
    var ctl = new AbortController();
    var timedOut = false;
    var timeout = opts.timeout || API_TIMEOUT_MS;
    var timer = setTimeout(function () { timedOut = true; ctl.abort(); }, timeout);
    if (opts.signal) {
      if (opts.signal.aborted) ctl.abort();
      else opts.signal.addEventListener('abort', function () { ctl.abort(); }, {once: true});
    }
    var init = {method: method, credentials: 'same-origin', cache: 'no-store', signal: ctl.signal,
                headers: {Accept: 'application/json'}};
    if (body !== undefined && body !== null) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    return fetch(path, init).then(function (resp) {
      var ctype = resp.headers.get('Content-Type') || '';
      var parse = ctype.indexOf('json') >= 0
        ? resp.text().then(function (t) {
            try { return {json: JSON.parse(t)}; } catch (e) { return {text: t}; }
          })
        : resp.text().then(function (t) { return {text: t}; });
      return parse.then(function (got) {
        if (resp.ok) return 'json' in got ? got.json : got.text;
        var env = got.json;
        var detail = env && typeof env.detail === 'string' ? env.detail
          : (got.text ? got.text.slice(0, 300) : (resp.statusText || 'request failed'));
        var err = new ApiError(resp.status, detail, path, env);
        if (resp.status === 401 && !opts.noLogin) onUnauthorized();
        throw err;
      });
    }, function (err) {
      if (timedOut) throw new ApiError(0, 'no answer from the bridge within ' + timeout / 1000 + ' s', path);
      if (err && err.name === 'AbortError') throw err;
      throw new ApiError(0, 'cannot reach the bridge (' + describeError(err) + ')', path);
    }).finally(function () { clearTimeout(timer); });
  }

  // ---------------------------------------------------------------- state
  var state = {
    running: false,          // logged in and showing the app
    topology: null,          // the data of /endpoint/list
    es: null,                // the EventSource
    everLive: false,
    lastEventId: null,
    backoff: 0,
    reconnectTimer: null,
    collapsed: new Set(),    // tree paths the user folded
    page: null,              // the open plugin page
    registry: new Map(),     // type -> {title, render}
    modules: new Map(),      // ui_module -> Promise
    notes: 0
  };

  function setConnState(s, label) {
    var node = $('conn-state');
    node.dataset.state = s;
    node.textContent = label || s;
    node.title = s === 'live' ? 'receiving live updates' : 'live updates interrupted; reconnecting by itself';
  }

  function showBanner(text, kind) {
    $('banner').className = kind === 'error' ? 'error' : '';
    $('banner-text').textContent = text;
    $('banner').hidden = false;
  }

  function hideBanner() { $('banner').hidden = true; }

  // ---------------------------------------------------------------- login
  function showLogin(message) {
    state.running = false;
    closeStream();
    closePage();
    $('app').hidden = true;
    $('terminate').hidden = true;
    $('logout').hidden = true;
    clear($('tree'));
    state.topology = null;
    setConnState('offline', 'logged out');
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
      start();
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
  function start() {
    setConnState('connecting');
    request('POST', '/endpoint/list').then(function (answer) {
      state.running = true;
      state.backoff = 0;
      $('login').hidden = true;
      $('app').hidden = false;
      $('terminate').hidden = false;
      $('logout').hidden = false;
      applyTopology(answer && answer.data);
      openStream();
      route();
    }, function (err) {
      if (err.status === 401) return;     // the login panel is up
      setConnState('offline');
      showBanner('Cannot load the endpoint list: ' + describeError(err) + ' (retrying)', 'error');
      setTimeout(start, backoffDelay());
    });
  }

  function backoffDelay() {
    var base = Math.min(30000, 1000 * Math.pow(2, state.backoff));
    state.backoff = Math.min(state.backoff + 1, 10);
    return Math.round(base * (0.8 + Math.random() * 0.4));
  }

  // ---------------------------------------------------------------- events
  function openStream() {
    closeStream();
    if (!state.running) return;
    // A new EventSource cannot set Last-Event-ID itself; the bridge also reads
    // ?last_event_id=. The browser's own reconnects send the header.
    var url = '/events' + (state.lastEventId ? '?last_event_id=' + encodeURIComponent(state.lastEventId) : '');
    var es = new EventSource(url);
    state.es = es;
    setConnState(state.everLive ? 'reconnecting' : 'connecting');
    es.addEventListener('open', function () {
      if (state.es !== es) return;
      state.backoff = 0;
      state.everLive = true;
      setConnState('live');
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
      setConnState('reconnecting');
      if (es.readyState === EventSource.CLOSED) {
        // the browser gave up (HTTP error such as 401, or a bad answer): retry ourselves
        es.close();
        state.es = null;
        scheduleReconnect();
      }
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
    state.reconnectTimer = setTimeout(function () {
      state.reconnectTimer = null;
      if (!state.running) return;
      // also tells a lost login (401 -> login panel) from a bridge that is down
      request('POST', '/endpoint/list').then(function (answer) {
        if (!state.running) return;
        applyTopology(answer && answer.data);
        openStream();
      }, function (err) {
        if (err.status !== 401 && state.running) scheduleReconnect();
      });
    }, backoffDelay());
  }

  // ---------------------------------------------------------------- topology & tree
  function endpointsOf(topology) {
    var eps = topology && topology.endpoints;
    return eps && typeof eps === 'object' ? eps : {};
  }

  function pluginInfo(endpoint, instance) {
    var ep = endpointsOf(state.topology)[endpoint];
    if (!ep || !ep.plugins || !Object.prototype.hasOwnProperty.call(ep.plugins, instance)) return null;
    return ep.plugins[instance];
  }

  function applyTopology(data) {
    if (!data || typeof data !== 'object') return;
    state.topology = data;
    var url = data.bridge && typeof data.bridge.url === 'string' ? data.bridge.url : location.origin;
    $('bridge-url').textContent = url;
    renderTree();
    var page = state.page;
    if (page) {
      var info = pluginInfo(page.endpoint, page.instance);
      if (info && page.waiting) {
        openPlugin(page.endpoint, page.instance);   // it was not there when the page opened
        return;
      }
      if (info) page.info = info;
      page.setOnline(!!info);
    } else {
      route();
    }
  }

  function compareNames(a, b) {
    if (a === 'bridge') return -1;
    if (b === 'bridge') return 1;
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
    var tree = $('tree');
    if (!names.length) {
      replace(tree, el('div', {class: 'tree-empty'}, 'No endpoints connected.'));
      return;
    }
    var root = buildTree(endpoints);
    replace(tree, el('ul', {role: 'tree'}, Array.from(root.children.values()).map(renderNode)));
  }

  function renderNode(node) {
    var entry = node.entry;
    var plugins = entry && entry.plugins && typeof entry.plugins === 'object' ? entry.plugins : {};
    var instances = Object.keys(plugins).sort();
    var hasKids = node.children.size > 0 || instances.length > 0;
    var collapsed = state.collapsed.has(node.path);
    var meta = [];
    if (entry && entry.endpoint) {
      if (entry.endpoint.type) meta.push(String(entry.endpoint.type));
      if (entry.endpoint.hostname) meta.push(String(entry.endpoint.hostname));
    }
    var row = el('div', {class: 'node-row'},
      el('button', {class: 'caret', type: 'button', 'aria-expanded': hasKids ? String(!collapsed) : null,
                    'aria-label': (collapsed ? 'expand ' : 'collapse ') + node.path,
                    onclick: function () {
                      if (state.collapsed.has(node.path)) state.collapsed.delete(node.path);
                      else state.collapsed.add(node.path);
                      renderTree();
                    }}, hasKids ? (collapsed ? '▸' : '▾') : ''),
      el('span', {class: entry ? 'name' : 'group-name', title: node.path}, node.label),
      el('span', {class: 'meta', title: meta.join(' · ')}, meta.join(' · ')),
      entry && node.path !== 'bridge'
        ? el('button', {class: 'disconnect danger', type: 'button', 'data-action': 'disconnect',
                        title: 'shut this endpoint down', onclick: function () { disconnect(node.path); }},
             'Disconnect')
        : null);
    var kids = null;
    if (hasKids && !collapsed) {
      kids = el('ul', {role: 'group'},
        instances.map(function (inst) { return renderPluginLink(node.path, inst, plugins[inst]); }),
        Array.from(node.children.values()).map(renderNode));
    }
    return el('li', {'data-endpoint': entry ? node.path : null, 'data-group': entry ? null : node.path,
                     role: 'treeitem'}, row, kids);
  }

  function renderPluginLink(endpoint, instance, info) {
    info = info || {};
    var cfg = info.ui_config && typeof info.ui_config === 'object' ? info.ui_config : {};
    var title = typeof cfg.title === 'string' && cfg.title ? cfg.title : instance;
    var page = state.page;
    var selected = page && page.endpoint === endpoint && page.instance === instance;
    var cls = 'plugin-link' + (selected ? ' selected' : '') + (info.enabled === false ? ' disabled' : '');
    return el('li', null, el('button', {
      class: cls, type: 'button', 'data-plugin': endpoint + '/' + instance,
      title: (info.type || instance) + (info.version ? ' ' + info.version : '') +
             (info.enabled === false ? ' (not enabled on this host)' : ''),
      onclick: function () { navigate(endpoint, instance); }
    }, el('span', null, title), title !== instance ? el('span', {class: 'inst'}, instance) : null));
  }

  function disconnect(name) {
    if (!window.confirm('Disconnect endpoint "' + name + '"?\n\nIt shuts down and does not reconnect.')) return;
    request('POST', '/endpoint/disconnect/' + encodeURIComponent(name)).then(function () {
      showBanner('Endpoint ' + name + ' was asked to shut down.');
    }, function (err) {
      showBanner('Disconnect ' + name + ' failed: ' + describeError(err), 'error');
    });
  }

  function terminate() {
    var url = $('bridge-url').textContent || location.origin;
    if (!window.confirm('Terminate the bridge at ' + url + '?\n\nEndpoints keep retrying until a bridge ' +
                        'is back; this page reconnects by itself.')) return;
    request('POST', '/bridge/terminate').then(function () {
      showBanner('The bridge is terminating.');
    }, function (err) {
      showBanner('Terminate failed: ' + describeError(err), 'error');
    });
  }

  // ---------------------------------------------------------------- notifications
  var pageNoteListeners = new Set();

  function onNotification(n) {
    if (!n || typeof n !== 'object') return;
    var list = $('notifications');
    var empty = list.querySelector('.empty');
    if (empty) list.removeChild(empty);
    var text = toText(n.data);
    if (text.length > MAX_NOTE_TEXT) text = text.slice(0, MAX_NOTE_TEXT) + ' …';
    list.insertBefore(el('li', null,
      el('span', {class: 't'}, fmtTime()),
      el('span', {class: 'src'}, toText(n.endpoint) + '/' + toText(n.plugin)),
      el('span', {class: 'topic'}, toText(n.topic)),
      el('span', {class: 'data'}, text)), list.firstChild);
    while (list.children.length > MAX_NOTES) list.removeChild(list.lastChild);
    state.notes += 1;
    $('notes-count').textContent = String(state.notes);
    pageNoteListeners.forEach(function (fn) {
      try { fn(n); } catch (err) { console.error('notification listener failed', err); }
    });
  }

  function clearNotes() {
    state.notes = 0;
    $('notes-count').textContent = '0';
    replace($('notifications'), el('li', {class: 'empty'}, 'No notifications yet.'));
  }

  // ---------------------------------------------------------------- plugin pages
  function registerPlugin(type, spec) {
    if (typeof type !== 'string' || !type) throw new Error('registerPlugin: type must be a string');
    if (!spec || typeof spec.render !== 'function') throw new Error('registerPlugin: spec.render must be a function');
    state.registry.set(type, {title: spec.title || type, render: spec.render});
  }

  function loadModule(name) {
    if (typeof name !== 'string' || !MODULE_RE.test(name)) {
      return Promise.reject(new Error('invalid Explorer module name ' + JSON.stringify(name)));
    }
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

  function navigate(endpoint, instance) {
    var hash = '#/' + encodeURIComponent(endpoint) + '/' + encodeURIComponent(instance);
    if (location.hash === hash) openPlugin(endpoint, instance);
    else location.hash = hash;
  }

  /** The hash names the open page: #/<endpoint>/<instance>. */
  function route() {
    if (!state.running) return;
    var m = /^#\/([^/]+)\/([^/]+)$/.exec(location.hash);
    if (!m) {
      if (state.page) closePage();
      showWelcome();
      return;
    }
    var endpoint, instance;
    try {
      endpoint = decodeURIComponent(m[1]);
      instance = decodeURIComponent(m[2]);
    } catch (e) {
      return;
    }
    var page = state.page;
    if (page && page.endpoint === endpoint && page.instance === instance) return;
    if (!state.topology) return;
    openPlugin(endpoint, instance);
  }

  function showWelcome() {
    var eps = endpointsOf(state.topology);
    var n = Object.keys(eps).length;
    var plugins = Object.keys(eps).reduce(function (acc, k) {
      return acc + Object.keys((eps[k] && eps[k].plugins) || {}).length;
    }, 0);
    replace($('page'), el('div', {class: 'welcome'},
      el('h2', null, 'ORBIT Explorer'),
      el('p', null, n + (n === 1 ? ' endpoint' : ' endpoints') + ' with ' + plugins +
                    (plugins === 1 ? ' plugin' : ' plugins') + ' connected to this bridge.'),
      el('p', null, 'Pick a plugin in the tree on the left to open its page. Dotted endpoint names ' +
                    'nest (hpc1.login sits under hpc1). The tree and the notifications below update live.')));
    renderTree();
  }

  function closePage() {
    var page = state.page;
    if (!page) return;
    state.page = null;
    page.active = false;
    page.ctl.abort();
    pageNoteListeners.forEach(function (fn) { if (fn.page === page) pageNoteListeners.delete(fn); });
    page.cleanups.splice(0).forEach(function (fn) {
      try { fn(); } catch (err) { console.error('cleanup failed', err); }
    });
    if (page.sidPromise) {
      page.sidPromise.then(function (sid) {
        // best effort: the endpoint may be gone already
        request('POST', page.base + 'unregister_session/' + encodeURIComponent(sid), null, {noLogin: true})
          .catch(function () {});
      }, function () {});
    }
  }

  function openPlugin(endpoint, instance) {
    closePage();
    var info = pluginInfo(endpoint, instance);
    var page = {
      endpoint: endpoint, instance: instance, info: info, active: true,
      ctl: new AbortController(), cleanups: [], sidPromise: null, sid: null,
      base: '/' + encodeURIComponent(endpoint) + '/' + encodeURIComponent(instance) + '/'
    };
    state.page = page;
    renderTree();

    var cfg = info && info.ui_config && typeof info.ui_config === 'object' ? info.ui_config : {};
    var statusBadge = el('span', {class: 'badge ok'}, 'connected');
    page.setOnline = function (online) {
      statusBadge.className = 'badge ' + (online ? 'ok' : 'bad');
      statusBadge.textContent = online ? 'connected' : 'not connected';
    };
    page.setOnline(!!info);
    var body = el('div', {class: 'plugin-body', 'data-plugin-page': endpoint + '/' + instance});
    replace($('page'),
      el('div', {id: 'page-head'},
        el('h2', null, typeof cfg.title === 'string' && cfg.title ? cfg.title : instance),
        el('span', {class: 'crumbs'}, endpoint + ' / ' + instance),
        info ? el('span', {class: 'badge info'}, toText(info.type) + (info.version ? ' ' + toText(info.version) : '')) : null,
        statusBadge,
        typeof cfg.description === 'string' ? el('span', {class: 'desc'}, cfg.description) : null),
      body);
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
        var o = Object.assign({}, opts || {}, {signal: page.ctl.signal});
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
      /** The page's session id: registered on first use, again after a 404/410. */
      session: function (opts) {
        if (opts && opts.renew) { page.sidPromise = null; page.sid = null; }
        if (!page.sidPromise) {
          var p = ctx.api('POST', 'register_session').then(function (answer) {
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
      every: function (ms, fn) {
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
      },
      el: el,
      util: util
    };
    return ctx;
  }

  /** For plugins without an Explorer module: their ui_config and base routes. */
  function renderGeneric(container, ctx, reason, keep) {
    if (!keep) clear(container);
    var info = ctx.info || {};
    var healthBox = el('div', null, el('span', {class: 'muted'}, 'loading…'));
    var versionBox = el('div', null, el('span', {class: 'muted'}, 'loading…'));
    function load() {
      ctx.api('GET', 'health').then(function (h) { replace(healthBox, kvTable(h)); },
        function (err) { if (ctx.active) replace(healthBox, el('div', {class: 'error-box'}, describeError(err))); });
      ctx.api('GET', 'version').then(function (v) { replace(versionBox, kvTable(v)); },
        function (err) { if (ctx.active) replace(versionBox, el('div', {class: 'error-box'}, describeError(err))); });
    }
    appendChildren(container, [
      reason ? el('div', {class: 'error-box'}, 'No custom page: ' + reason) : null,
      el('div', {class: 'toolbar'},
        el('span', null, 'Generic page: this plugin ships no Explorer module.'),
        el('button', {type: 'button', onclick: load}, 'Refresh')),
      el('div', {class: 'cards'},
        el('section', {class: 'card'}, el('h3', null, 'Plugin'), kvTable({
          endpoint: ctx.endpoint, instance: ctx.instance, type: info.type, version: info.version,
          namespace: info.namespace, enabled: info.enabled, ui_module: info.ui_module || null,
          client_class: info.client_class})),
        el('section', {class: 'card'}, el('h3', null, 'ui_config'),
          kvTable(info.ui_config, {empty: 'no ui_config'})),
        el('section', {class: 'card'}, el('h3', null, 'GET health'), healthBox),
        el('section', {class: 'card'}, el('h3', null, 'GET version'), versionBox))
    ]);
    load();
  }

  // ---------------------------------------------------------------- boot
  window.OrbitExplorer = Object.freeze({
    version: VERSION,
    registerPlugin: registerPlugin,
    el: el,
    util: util,
    ApiError: ApiError
  });

  function boot() {
    $('login-form').addEventListener('submit', submitLogin);
    $('logout').addEventListener('click', logout);
    $('terminate').addEventListener('click', terminate);
    $('banner-close').addEventListener('click', hideBanner);
    $('notes-clear').addEventListener('click', clearNotes);
    $('notes-toggle').addEventListener('click', function () {
      var notes = $('notes');
      notes.classList.toggle('collapsed');
      this.textContent = notes.classList.contains('collapsed') ? 'show' : 'hide';
    });
    window.addEventListener('hashchange', function () {
      if (location.hash === '#login-failed') return;
      route();
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

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', boot);
  else boot();
})();

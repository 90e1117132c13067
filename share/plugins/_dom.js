/* ORBIT Explorer, the shell's first file: DOM helpers, formatting and the HTTP call.
 * The shell is four classic scripts that index.html loads in order, sharing their
 * internals through window.OrbitExplorerShell (not part of the page API, which is
 * window.OrbitExplorer): _dom.js, _explorer.js (state, stream, tree, routes, plugin
 * pages), _overview.js (the overview and endpoint pages), _bridge_page.js.
 *
 * Rule for these files and every plugin module: nothing received from the bridge or
 * an endpoint is ever parsed as HTML. DOM is built with el() (createElement,
 * setAttribute, textContent, appendChild) only; no innerHTML, outerHTML,
 * insertAdjacentHTML or document.write. The page's Content-Security-Policy
 * (script-src 'self') also forbids inline scripts, inline handlers and eval.
 */
(function () {
  'use strict';
  var S = window.OrbitExplorerShell = {};

  var API_TIMEOUT_MS = 30000;
  var UNSAFE_URL = /^(javascript|vbscript|data:text)/i;

  /** A URL the browser would run as script. It reads a URL as the URL parser does: tabs
   * and newlines anywhere are dropped ("java\tscript:" is "javascript:"), and so are
   * controls and spaces before the scheme. */
  function unsafeUrl(value) {
    return UNSAFE_URL.test(String(value).replace(/[\t\n\r]/g, '').replace(/^[\x00-\x20]+/, ''));
  }

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
            unsafeUrl(value)) {
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

  function fmtPercent(p) {
    var r = isNum(p) ? Math.round(p * 10) / 10 : NaN;
    return isFinite(r) ? r + ' %' : '—';
  }

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

  /** A labelled percentage with its bar: meter('CPU', 42.5, '8 cores'). */
  function meter(label, percent, detail, testid) {
    return el('div', {class: 'meter', 'data-testid': testid || null},
      el('span', {class: 'label'}, label),
      el('span', {class: 'value'}, detail ? detail + '  ·  ' + fmtPercent(percent) : fmtPercent(percent)),
      bar(percent, label + ' ' + fmtPercent(percent)));
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
    el: el, clear: clear, replace: replace, bar: bar, meter: meter, kvTable: kvTable, table: table,
    fmtBytes: fmtBytes, fmtDuration: fmtDuration, fmtPercent: fmtPercent, fmtTime: fmtTime,
    toText: toText, seg: encodeURIComponent, describeError: describeError
  };

  // ---------------------------------------------------------------- HTTP
  function ApiError(status, detail, path, body, loggedOut) {
    this.name = 'ApiError';
    this.status = status;
    this.detail = detail;
    this.path = path;
    this.body = body;
    this.loggedOut = !!loggedOut;       // the bridge itself refused the login (see request)
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

  /** The bridge marks a 401 in which it refuses the login itself with this header, and
   * strips it from the plugin answers it relays: only such a 401 shows the login view. A
   * 401 that a plugin answers (Globus wanting consent, through an endpoint) is that
   * page's error like any other. */
  var REFUSED_HEADER = 'X-Orbit-Auth';

  /** The ApiError of an answer that is not 2xx, from its status, header(name) -> its
   * header's value, and its body text (the error envelope's detail when it is one): the
   * one rule for every call to the bridge, fetch or XHR. The bridge's own 401 shows the
   * login view (noLogin: not for the login form's own calls). */
  function answerError(status, header, text, path, noLogin) {
    var env = null;
    try { env = JSON.parse(text); } catch (e) { /* not JSON */ }
    var detail = env && typeof env.detail === 'string' ? env.detail
      : (text ? String(text).slice(0, 300) : 'request failed');
    var loggedOut = status === 401 && header(REFUSED_HEADER) === 'refused';
    var err = new ApiError(status, detail, path, env, loggedOut);
    if (loggedOut && !noLogin) S.onUnauthorized();
    return err;
  }

  /** JSON request to the bridge with the same-origin cookie. Resolves to the
   * parsed JSON (or text for non-JSON answers); rejects with ApiError carrying
   * the error envelope's status_code and detail. The bridge's own 401 shows the login
   * panel (opts.noLogin: not for the login form's own calls). */
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
                headers: {Accept: 'application/json'}, keepalive: !!opts.keepalive};
    if (body !== undefined && body !== null) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    return fetch(path, init).then(function (resp) {
      return resp.text().then(function (text) {
        if (!resp.ok) {
          throw answerError(resp.status, function (name) { return resp.headers.get(name); },
                            text || resp.statusText, path, opts.noLogin);
        }
        if ((resp.headers.get('Content-Type') || '').indexOf('json') < 0) return text;
        try { return JSON.parse(text); } catch (e) { return text; }
      });
    }, function (err) {
      if (timedOut) throw new ApiError(0, 'no answer from the bridge within ' + timeout / 1000 + ' s', path);
      if (err && err.name === 'AbortError') throw err;
      throw new ApiError(0, 'cannot reach the bridge (' + describeError(err) + ')', path);
    }).finally(function () { clearTimeout(timer); });
  }

  function obj(v) { return v && typeof v === 'object' && !Array.isArray(v) ? v : {}; }
  function arr(v) { return Array.isArray(v) ? v : []; }

  S.onUnauthorized = function () {};     // _explorer.js: shows the login view
  Object.assign(S, {$: $, el: el, appendChildren: appendChildren, clear: clear, replace: replace, isNum: isNum, fmtBytes: fmtBytes, fmtDuration: fmtDuration, fmtPercent: fmtPercent, fmtTime: fmtTime, toText: toText, bar: bar, meter: meter, kvTable: kvTable, table: table, util: util, ApiError: ApiError, describeError: describeError, answerError: answerError, request: request, obj: obj, arr: arr});
})();

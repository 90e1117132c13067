/* The generic page: what a plugin without an Explorer module shows. It builds the
 * forms, monitors and notification tables the plugin's ui_config lists under
 * "sections" (the schema is in docs/explorer.md), then the plugin's details and the
 * answers of GET health and GET version. Written against the public page API only.
 * Nothing from ui_config or an answer is HTML: text and el() only. */
(function () {
  'use strict';
  var X = window.OrbitExplorer;
  if (!X) return;
  var u = X.util, el = X.el;
  var replace = u.replace, kvTable = u.kvTable, table = u.table, toText = u.toText;
  var fmtBytes = u.fmtBytes, fmtDuration = u.fmtDuration, fmtPercent = u.fmtPercent, fmtTime = u.fmtTime;
  var describeError = u.describeError;

  function isNum(v) { return typeof v === 'number' && isFinite(v); }
  function obj(v) { return v && typeof v === 'object' && !Array.isArray(v) ? v : {}; }
  function arr(v) { return Array.isArray(v) ? v : []; }
  /** table[key] if the table has it as its own: a ui_config's "kind": "constructor" or a
   * column keyed "toString" must not reach Object's members. */
  function own(table, key) {
    return table && Object.prototype.hasOwnProperty.call(table, key) ? table[key] : undefined;
  }
  function append(node, children) {
    children.forEach(function (c) { if (c) node.appendChild(c); });
  }

  var MAX_SECTIONS = 20;
  var MAX_FIELDS = 30;
  var MAX_ROWS = 500;
  var FIELD_TYPES = ['text', 'number', 'integer', 'checkbox', 'select', 'textarea', 'json', 'password'];
  var NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
  var PLACEHOLDER_RE = /\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

  /** A ui_config path: relative to the plugin, no "..", only URL-safe characters and {name} slots. */
  function safePath(path) {
    if (typeof path !== 'string' || path.length > 300 || !/^[A-Za-z0-9_.~{}\/-]*$/.test(path)) return null;
    if (path.charAt(0) === '/' || path.split('/').some(function (s) { return s === '..' || s === '.'; })) return null;
    return path;
  }

  function clampNum(v, lo, hi, dflt) {
    return isNum(v) ? Math.max(lo, Math.min(hi, v)) : dflt;
  }

  function formatCell(value, format) {
    if (format === 'bytes') return fmtBytes(value);
    if (format === 'duration') return fmtDuration(value);
    if (format === 'percent') return fmtPercent(value);
    if (format === 'time') return isNum(value) ? new Date(value * 1000).toLocaleString() : toText(value);
    return toText(value);
  }

  function columnsOf(spec, rows) {
    var cols = arr(spec).map(obj).filter(function (c) { return typeof c.key === 'string'; });
    if (cols.length) return cols;
    var first = obj(rows[0]);
    return Object.keys(first).slice(0, 8).map(function (k) { return {key: k}; });
  }

  /** An answer as the section asks: "kv" (default), "table" (rows: answer[items] or the answer), "json". */
  function showAnswer(answer, s) {
    var show = s.show || s.result || 'kv';
    if (show === 'none') return el('span', {class: 'muted'}, 'done');
    if (show === 'json' || (show === 'kv' && (answer === null || typeof answer !== 'object'))) {
      return el('pre', {class: 'json'}, toText(answer, 2));
    }
    if (show === 'table') {
      var rows = typeof s.items === 'string' ? own(obj(answer), s.items) : answer;
      if (!Array.isArray(rows) && rows && typeof rows === 'object') {
        rows = Object.keys(rows).map(function (k) { return Object.assign({key: k}, obj(rows[k])); });
      }
      rows = arr(rows).slice(0, MAX_ROWS);
      var cols = columnsOf(s.columns, rows);
      return table(cols.map(function (c) { return {label: typeof c.label === 'string' ? c.label : c.key, num: !!c.num}; }),
        rows.map(function (r) {
          r = obj(r);
          return cols.map(function (c) { return formatCell(own(r, c.key), c.format); });
        }), {empty: typeof s.empty === 'string' ? s.empty : 'nothing'});
    }
    return kvTable(answer);
  }

  function sectionCard(s, kind, i, children) {
    return el('section', {class: 'card' + (s.wide ? ' wide' : ''), 'data-generic': kind, 'data-section': String(i)},
      el('h3', null, typeof s.title === 'string' && s.title ? s.title : kind), children);
  }

  function callPath(ctx, method, path, params, query, body) {
    var needsSid = false;
    var filled = path.replace(PLACEHOLDER_RE, function (m, key) {
      if (key === 'sid') { needsSid = true; return m; }
      var value = own(params, key);
      return encodeURIComponent(value === undefined ? '' : String(value));
    });
    var qs = query.length ? '?' + query.map(function (kv) {
      return encodeURIComponent(kv[0]) + '=' + encodeURIComponent(kv[1]);
    }).join('&') : '';
    function go(sid) {
      var p = sid ? filled.replace(/\{sid\}/g, encodeURIComponent(sid)) : filled;
      return ctx.api(method, p + qs, method === 'GET' || method === 'DELETE' ? null : body);
    }
    return needsSid ? ctx.withSession(go) : go(null);
  }

  function genericForm(s, ctx, i) {
    var method = String(s.method || 'POST').toUpperCase();
    if (['GET', 'POST', 'PUT', 'DELETE'].indexOf(method) < 0) method = 'POST';
    var path = safePath(s.path);
    if (path === null) return sectionCard(s, 'form', i, el('div', {class: 'error-box'}, 'ui_config: this form has no valid path'));
    var slots = {};
    path.replace(PLACEHOLDER_RE, function (m, key) { slots[key] = true; return m; });
    var grid = el('div', {class: 'form-grid'});
    var fields = arr(s.fields).slice(0, MAX_FIELDS).map(obj).filter(function (f) {
      return typeof f.name === 'string' && NAME_RE.test(f.name);
    }).map(function (f, j) {
      var id = 'generic-' + i + '-' + j;
      var type = FIELD_TYPES.indexOf(f.type) >= 0 ? f.type : 'text';
      var dflt = f['default'];
      var input;
      if (type === 'select') {
        input = el('select', {id: id}, arr(f.options).map(function (o) {
          return el('option', {value: toText(o), selected: dflt !== undefined && toText(o) === toText(dflt)}, toText(o));
        }));
      } else if (type === 'textarea' || type === 'json') {
        input = el('textarea', {id: id, rows: 3, spellcheck: 'false', placeholder: typeof f.placeholder === 'string' ? f.placeholder : null,
                                value: dflt === undefined ? '' : (type === 'json' ? JSON.stringify(dflt, null, 1) : toText(dflt))});
      } else if (type === 'checkbox') {
        input = el('input', {id: id, type: 'checkbox', checked: dflt === true});
      } else {
        input = el('input', {id: id, type: type === 'integer' ? 'number' : type,
                             step: type === 'integer' ? '1' : (type === 'number' ? 'any' : null),
                             placeholder: typeof f.placeholder === 'string' ? f.placeholder : null,
                             value: dflt === undefined || dflt === null ? '' : toText(dflt)});
      }
      input.setAttribute('data-field', f.name);
      if (f.required) input.setAttribute('aria-required', 'true');
      append(grid, [el('label', {for: id}, (typeof f.label === 'string' && f.label ? f.label : f.name) + (f.required ? ' *' : '')),
        input, typeof f.help === 'string' ? el('div', {class: 'help'}, f.help) : null]);
      var where = f['in'] === 'path' || f['in'] === 'query' || f['in'] === 'body' ? f['in']
        : (own(slots, f.name) ? 'path' : (method === 'GET' || method === 'DELETE' ? 'query' : 'body'));
      return {f: f, type: type, input: input, where: where};
    });
    var result = el('div', {class: 'result', 'data-testid': 'generic-result', 'aria-live': 'polite'});
    var submit = el('button', {type: 'submit', class: 'primary'}, typeof s.submit === 'string' && s.submit ? s.submit : 'Send');
    var form = el('form', {'aria-label': typeof s.title === 'string' ? s.title : 'form'}, grid, submit, result);
    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      var params = {}, query = [], body = {}, problems = [];
      fields.forEach(function (x) {
        var f = x.f, raw = x.type === 'checkbox' ? x.input.checked : x.input.value, value = raw;
        if (x.type !== 'checkbox' && raw === '') {
          if (f.required) problems.push((f.label || f.name) + ' is required');
          return;
        }
        if (x.type === 'number' || x.type === 'integer') {
          value = Number(raw);
          if (!isFinite(value) || (x.type === 'integer' && Math.floor(value) !== value)) {
            problems.push((f.label || f.name) + ' must be ' + (x.type === 'integer' ? 'a whole number' : 'a number'));
            return;
          }
        } else if (x.type === 'json') {
          try { value = JSON.parse(raw); } catch (e) { problems.push((f.label || f.name) + ' is not valid JSON'); return; }
        }
        if (x.where === 'path') params[f.name] = value;
        else if (x.where === 'query') query.push([f.name, typeof value === 'string' ? value : JSON.stringify(value)]);
        else body[f.name] = value;
      });
      if (problems.length) { replace(result, el('div', {class: 'error-box'}, problems.join('\n'))); return; }
      submit.disabled = true;
      replace(result, el('span', {class: 'muted'}, 'sending…'));
      callPath(ctx, method, path, params, query, body).then(function (answer) {
        if (ctx.active) replace(result, showAnswer(answer, s));
      }, function (err) {
        if (ctx.active) replace(result, el('div', {class: 'error-box'}, describeError(err)));
      }).then(function () { submit.disabled = false; });
    });
    return sectionCard(s, 'form', i, form);
  }

  function genericMonitor(s, ctx, i) {
    var path = safePath(s.path);
    if (path === null) return sectionCard(s, 'monitor', i, el('div', {class: 'error-box'}, 'ui_config: this monitor has no valid path'));
    var out = el('div', null, el('span', {class: 'muted'}, 'loading…'));
    var stamp = el('div', {class: 'muted', style: {fontSize: '11.5px', marginTop: '4px'}});
    var every = clampNum(s.every, 1, 3600, 5) * 1000;
    ctx.every(every, function () {
      return callPath(ctx, 'GET', path, {}, [], null).then(function (answer) {
        if (!ctx.active) return;
        replace(out, showAnswer(answer, s));
        stamp.textContent = 'updated ' + fmtTime() + ' · every ' + every / 1000 + ' s';
      }, function (err) {
        if (ctx.active) stamp.textContent = 'refresh failed: ' + describeError(err);
      });
    });
    return sectionCard(s, 'monitor', i, [out, stamp]);
  }

  function genericNotifications(s, ctx, i) {
    var topics = arr(s.topics).map(toText);
    var max = clampNum(s.max, 1, MAX_ROWS, 50);
    var cols = arr(s.columns).map(obj).filter(function (c) { return typeof c.key === 'string'; });
    var tbody = el('tbody');
    var empty = el('div', {class: 'muted'}, 'None since this page opened.');
    var grid = el('table', {class: 'grid', hidden: true},
      el('thead', null, el('tr', null, el('th', {scope: 'col'}, 'time'), el('th', {scope: 'col'}, 'topic'),
        cols.length ? cols.map(function (c) { return el('th', {scope: 'col', class: c.num ? 'num' : null}, c.label || c.key); })
                    : el('th', {scope: 'col'}, 'data'))),
      tbody);
    ctx.onNotification(function (n) {
      var topic = toText(n.topic);
      if (topics.length && topics.indexOf(topic) < 0) return;
      var data = n.data;
      var cells = cols.length ? cols.map(function (c) {
        return el('td', {class: c.num ? 'num' : null}, formatCell(own(obj(data), c.key), c.format));
      }) : el('td', {class: 'mono'}, toText(data));
      tbody.insertBefore(el('tr', null, el('td', {class: 'mono'}, fmtTime()), el('td', null, topic), cells), tbody.firstChild);
      while (tbody.children.length > max) tbody.removeChild(tbody.lastChild);
      grid.hidden = false;
      empty.hidden = true;
    });
    return sectionCard(s, 'notifications', i, [empty, grid]);
  }

  var SECTION_KINDS = {form: genericForm, monitor: genericMonitor, notifications: genericNotifications};

  /** The sections the plugin's ui_config asks for, then its details and base routes;
   * `reason` says why there is no custom page, when there is one to say. */
  function render(container, ctx, reason) {
    var info = ctx.info || {};
    var cfg = obj(info.ui_config);
    var sections = arr(cfg.sections).slice(0, MAX_SECTIONS).map(function (s, i) {
      s = obj(s);
      var make = own(SECTION_KINDS, s.kind);
      return make ? make(s, ctx, i)
        : sectionCard(s, 'unknown', i, el('div', {class: 'error-box'}, 'ui_config: unknown section kind ' + toText(s.kind)));
    });
    var healthBox = el('div', null, el('span', {class: 'muted'}, 'loading…'));
    var versionBox = el('div', null, el('span', {class: 'muted'}, 'loading…'));
    function load() {
      ctx.api('GET', 'health').then(function (h) { replace(healthBox, kvTable(h)); },
        function (err) { if (ctx.active) replace(healthBox, el('div', {class: 'error-box'}, describeError(err))); });
      ctx.api('GET', 'version').then(function (v) { replace(versionBox, kvTable(v)); },
        function (err) { if (ctx.active) replace(versionBox, el('div', {class: 'error-box'}, describeError(err))); });
    }
    var details = {endpoint: ctx.endpoint, instance: ctx.instance, type: info.type, version: info.version,
                   namespace: info.namespace, enabled: info.enabled, ui_module: info.ui_module || null,
                   client_class: info.client_class};
    if (typeof cfg.description === 'string') details.description = cfg.description;
    append(container, [
      reason ? el('div', {class: 'error-box'}, 'No custom page: ' + reason) : null,
      sections.length ? el('div', {class: 'cards', 'data-testid': 'generic-sections'}, sections) : null,
      el('div', {class: 'toolbar'},
        el('span', null, sections.length ? 'Built from the plugin\'s ui_config.' : 'Generic page: this plugin ships no Explorer module.'),
        el('button', {type: 'button', onclick: load}, 'Refresh')),
      el('div', {class: 'cards'},
        el('section', {class: 'card'}, el('h3', null, 'Plugin'), kvTable(details)),
        sections.length ? null : el('section', {class: 'card'}, el('h3', null, 'ui_config'),
          kvTable(info.ui_config, {empty: 'no ui_config'})),
        el('section', {class: 'card'}, el('h3', null, 'GET health'), healthBox),
        el('section', {class: 'card'}, el('h3', null, 'GET version'), versionBox))
    ]);
    load();
  }

  X.registerPlugin('_generic', {title: 'Generic page', render: render});
})();

/* globus: Globus transfers over the globus plugin's routes (docs/plugins.md).
 *
 * The page's session (registered by the shell) gets its credentials from the form at
 * `POST login/<sid>`; the token fields are password inputs, emptied once the endpoint
 * has the credentials, and their values are never written anywhere else on the page.
 * Two collection panes list with `GET ls/<sid>/<collection>?path=`; the entries ticked
 * on the left are submitted to the right pane's folder (`POST submit/<sid>`). The
 * transfers table starts from `GET tasks/<sid>` and follows `transfer_status`
 * notifications; active tasks can be cancelled. A 401 from these routes is Globus's (no
 * credentials yet, refused, consent needed): the shell shows it as this page's error and
 * returns to its login view only on the bridge's own refusal. Everything from Globus
 * reaches the DOM as text, through el().
 */
(function () {
  'use strict';
  var X = window.OrbitExplorer;
  if (!X) return;
  var u = X.util, el = X.el, ownValue = X.ownValue;  // states from the data are own keys only

  /** the transfers table is re-read this often (notifications keep it live in between) */
  var REFRESH_MS = 30000;
  var TASKS_SHOWN = 25;
  var ACTIVE = {ACTIVE: true, INACTIVE: true};
  var STATUS_BADGE = {ACTIVE: 'info', INACTIVE: 'warn', SUCCEEDED: 'ok', FAILED: 'bad'};
  var FORMS = {
    access_token: {label: 'access token', fields: ['access_token']},
    refresh_token: {label: 'refresh token + client id', fields: ['refresh_token', 'client_id', 'client_secret']},
    client_credentials: {label: 'client credentials', fields: ['client_id', 'client_secret']}
  };
  var FIELD = {
    access_token: {label: 'Access token', secret: true},
    refresh_token: {label: 'Refresh token', secret: true},
    client_id: {label: 'Client id', secret: false},
    client_secret: {label: 'Client secret (confidential clients)', secret: true}
  };
  var STYLE =
    '.gl-login{display:flex;flex-wrap:wrap;gap:8px;align-items:end}' +
    '.gl-login label{display:flex;flex-direction:column;font-size:12px;color:var(--muted);gap:2px}' +
    '.gl-login input,.gl-login select,.gl-pane input,.gl-submit input,.gl-submit select{font:inherit;padding:3px 6px;' +
    'border:1px solid var(--line);border-radius:5px;background:var(--panel)}' +
    '.gl-panes{display:grid;grid-template-columns:1fr 1fr;gap:12px}' +
    '.gl-pane .bar{display:flex;gap:6px;margin-bottom:6px}' +
    '.gl-pane .bar input{min-width:0;flex:1}' +
    '.gl-pane .path{font-family:var(--mono);font-size:12.5px;margin-bottom:6px;word-break:break-all}' +
    '.gl-pane button.dir{border:0;background:none;padding:0;color:var(--accent);font:inherit;font-weight:600}' +
    '.gl-submit{display:flex;flex-wrap:wrap;gap:8px;align-items:center;margin:10px 0}' +
    '@media (max-width:900px){.gl-panes{grid-template-columns:1fr}}';

  function obj(v) { return v && typeof v === 'object' && !Array.isArray(v) ? v : {}; }
  function arr(v) { return Array.isArray(v) ? v : []; }
  function txt(v) { return v === null || v === undefined || v === '' ? '—' : String(v); }
  function dirPath(p) { return /\/$/.test(p) ? p : p + '/'; }

  X.registerPlugin('globus', {
    title: 'Globus',
    render: function (container, ctx) {
      var errorBox = el('div', {class: 'error-box', hidden: true, 'data-testid': 'globus-error'});
      var authBadge = el('span', {class: 'badge', 'data-testid': 'globus-auth'}, 'no credentials');
      var localInfo = el('span', {class: 'muted', 'data-testid': 'globus-local'});
      var tasks = {};            // task_id -> the latest we know of it
      var order = [];            // task ids, newest first
      var transfers = el('div', {'data-testid': 'globus-transfers'});

      function fail(what) {
        return function (err) {
          if (!ctx.active) return;
          if (err instanceof X.ApiError && err.status === 401 && /no Globus credentials/.test(err.detail)) {
            authBadge.className = 'badge';        // a new session (the old one expired): sign in again
            authBadge.textContent = 'no credentials';
          }
          errorBox.textContent = what + ': ' + u.describeError(err);
          errorBox.hidden = false;
        };
      }
      function ok() { errorBox.hidden = true; }
      function call(method, route, body) {
        return ctx.withSession(function (sid) {
          return ctx.api(method, route.replace('{sid}', encodeURIComponent(sid)), body);
        });
      }

      // -- credentials ---------------------------------------------------------------
      var kind = el('select', {'data-testid': 'globus-auth-kind'}, Object.keys(FORMS).map(function (k) {
        return el('option', {value: k}, FORMS[k].label);
      }));
      var inputs = {};
      var labels = {};
      Object.keys(FIELD).forEach(function (name) {
        inputs[name] = el('input', {type: FIELD[name].secret ? 'password' : 'text', name: name,
                                    autocomplete: 'off', spellcheck: 'false', 'data-field': name});
        labels[name] = el('label', null, FIELD[name].label, inputs[name]);
      });
      function showFields() {
        var wanted = FORMS[kind.value].fields;
        Object.keys(labels).forEach(function (name) { labels[name].hidden = wanted.indexOf(name) < 0; });
      }
      kind.addEventListener('change', showFields);
      var loginForm = el('form', {class: 'gl-login', 'data-testid': 'globus-login', autocomplete: 'off'},
        el('label', null, 'Credentials', kind),
        Object.keys(labels).map(function (n) { return labels[n]; }),
        el('button', {type: 'submit'}, 'Use these credentials'));
      loginForm.addEventListener('submit', function (ev) {
        ev.preventDefault();
        var body = {};
        FORMS[kind.value].fields.forEach(function (name) {
          if (inputs[name].value) body[name] = inputs[name].value;
        });
        call('POST', 'login/{sid}', body).then(function (answer) {
          // the endpoint holds them now: the page keeps no copy
          Object.keys(inputs).forEach(function (name) { if (FIELD[name].secret) inputs[name].value = ''; });
          authBadge.className = 'badge ok';
          authBadge.textContent = 'signed in: ' + txt(obj(answer).auth);
          ok();
          left.list();
          right.list();
          loadTasks();
        }).then(null, fail('Login failed'));
      });
      showFields();

      // -- collection panes ------------------------------------------------------------
      function pane(side, collection) {
        var idBox = el('input', {'data-testid': 'globus-collection', value: collection || '',
                                 placeholder: 'collection id, or local'});
        var pathBox = el('input', {'data-testid': 'globus-path', value: '/~/'});
        var where = el('div', {class: 'path', 'data-testid': 'globus-where'});
        var listing = el('div', {'data-testid': 'globus-listing'}, el('div', {class: 'muted'}, 'Not listed yet.'));
        var chosen = {};
        var p = {
          side: side,
          node: el('section', {class: 'card gl-pane', 'data-testid': 'globus-' + side},
            el('h3', null, side === 'left' ? 'Source' : 'Destination'),
            el('div', {class: 'bar'}, idBox, pathBox,
               el('button', {type: 'button', 'data-action': 'list', onclick: function () { p.list(); }}, 'List'),
               el('button', {type: 'button', 'data-action': 'up', onclick: function () {
                 var path = dirPath(pathBox.value).replace(/[^/]+\/$/, '');
                 pathBox.value = path || '/';
                 p.list();
               }}, 'Up')),
            where, listing),
          collection: function () { return idBox.value.trim(); },
          path: function () { return dirPath(pathBox.value.trim() || '/~/'); },
          selected: function () {
            return Object.keys(chosen).filter(function (n) { return chosen[n].input.checked; })
              .map(function (n) { return chosen[n].entry; });
          },
          setCollection: function (id) { if (!idBox.value) idBox.value = id; },
          list: function () {
            var id = p.collection();
            if (!id) return Promise.resolve();
            var route = 'ls/{sid}/' + encodeURIComponent(id) + '?path=' + encodeURIComponent(p.path());
            return call('GET', route).then(function (answer) {
              if (!ctx.active) return;
              answer = obj(answer);
              pathBox.value = typeof answer.path === 'string' ? answer.path : p.path();
              where.textContent = txt(answer.collection) + ' : ' + pathBox.value;
              chosen = {};
              var rows = arr(answer.entries).map(function (e) {
                e = obj(e);
                var box = el('input', {type: 'checkbox', 'aria-label': 'select ' + txt(e.name)});
                chosen[String(e.name)] = {input: box, entry: e};
                var name = e.type === 'dir'
                  ? el('button', {type: 'button', class: 'dir', onclick: function () {
                    pathBox.value = p.path() + e.name + '/';
                    p.list();
                  }}, String(e.name) + '/')
                  : el('span', null, txt(e.name));
                var row = [side === 'left' ? box : null, name, txt(e.type), u.fmtBytes(e.size)];
                return row.filter(function (c) { return c !== null; });
              });
              var cols = [{label: 'Name'}, {label: 'Type'}, {label: 'Size', num: true}];
              if (side === 'left') cols.unshift({label: ''});
              u.replace(listing, u.table(cols, rows, {empty: 'empty folder'}));
              var trs = listing.querySelectorAll('tbody tr');
              arr(answer.entries).forEach(function (e, i) { if (trs[i]) trs[i].dataset.name = String(obj(e).name); });
              ok();
            }).then(null, fail('Cannot list ' + id + ' ' + p.path()));
          }
        };
        return p;
      }
      var left = pane('left', ''), right = pane('right', '');

      // -- submit ---------------------------------------------------------------------
      var label = el('input', {'data-testid': 'globus-label', placeholder: 'label (optional)', maxlength: 128});
      var sync = el('select', {'data-testid': 'globus-sync'},
        el('option', {value: ''}, 'always copy'),
        ['exists', 'size', 'mtime', 'checksum'].map(function (s) { return el('option', {value: s}, 'sync: ' + s); }));
      var submitButton = el('button', {type: 'button', 'data-testid': 'globus-submit'}, 'Transfer selected →');
      submitButton.addEventListener('click', function () {
        var picked = left.selected();
        if (!picked.length) {
          errorBox.textContent = 'Tick the files or folders to transfer on the left first.';
          errorBox.hidden = false;
          return;
        }
        var items = picked.map(function (e) {
          var dir = e.type === 'dir';
          return {source: left.path() + e.name + (dir ? '/' : ''),
                  destination: right.path() + e.name + (dir ? '/' : ''), recursive: dir};
        });
        var body = {source: left.collection(), destination: right.collection(), items: items};
        if (label.value) body.label = label.value;
        if (sync.value) body.sync_level = sync.value;
        submitButton.disabled = true;
        call('GET', 'submission_id/{sid}').then(function (s) {
          body.submission_id = obj(s).submission_id;
          return call('POST', 'submit/{sid}', body);
        }).then(function (answer) {
          answer = obj(answer);
          seen({task_id: answer.task_id, status: 'ACTIVE', label: body.label || null, type: 'TRANSFER',
                source_endpoint_id: body.source, destination_endpoint_id: body.destination});
          ok();
        }).then(null, fail('Transfer not submitted')).then(function () { submitButton.disabled = false; });
      });

      // -- transfers -------------------------------------------------------------------
      function seen(task) {
        task = obj(task);
        if (typeof task.task_id !== 'string') return;
        if (!tasks[task.task_id]) order.unshift(task.task_id);
        tasks[task.task_id] = Object.assign({}, tasks[task.task_id] || {}, task);
        drawTasks();
      }
      function drawTasks() {
        var rows = order.slice(0, TASKS_SHOWN).map(function (id) {
          var t = tasks[id];
          var cancel = ownValue(ACTIVE, t.status)
            ? el('button', {type: 'button', 'data-action': 'cancel', onclick: function () {
              call('POST', 'cancel/{sid}/' + encodeURIComponent(id)).then(function (r) {
                seen({task_id: id, nice_status: obj(r).code});
                ok();
              }).then(null, fail('Cancel failed'));
            }}, 'Cancel')
            : null;
          return [el('span', {class: 'mono', title: id}, id.slice(0, 8)), txt(t.label), txt(t.type),
                  el('span', {class: 'badge ' + (ownValue(STATUS_BADGE, t.status) || ''), 'data-testid': 'globus-task-status'},
                     txt(t.status) + (t.nice_status && t.nice_status !== 'OK' ? ' (' + t.nice_status + ')' : '')),
                  txt(t.files_transferred) + ' / ' + txt(t.files), u.fmtBytes(t.bytes_transferred), cancel];
        });
        u.replace(transfers, u.table([{label: 'Task'}, {label: 'Label'}, {label: 'Type'}, {label: 'Status'},
                                      {label: 'Files', num: true}, {label: 'Bytes', num: true}, {label: ''}],
                                     rows, {empty: 'No transfers yet.'}));
        var trs = transfers.querySelectorAll('tbody tr');
        order.slice(0, TASKS_SHOWN).forEach(function (id, i) { if (trs[i]) trs[i].dataset.task = id; });
      }
      function loadTasks() {
        return call('GET', 'tasks/{sid}?limit=' + TASKS_SHOWN).then(function (answer) {
          arr(obj(answer).tasks).slice().reverse().forEach(seen);
        }, function (err) {
          if (err instanceof X.ApiError && err.status === 401) return;   // not signed in yet
          return fail('Cannot list transfers')(err);
        });
      }
      ctx.onNotification(function (n) {
        if (n.topic === 'transfer_status') seen(n.data);
      });

      u.replace(container, el('style', null, STYLE), errorBox,
        el('section', {class: 'card wide'}, el('h3', null, 'Globus credentials ', authBadge),
           el('p', {class: 'muted'}, 'They go to the endpoint, which keeps them in memory for this page\'s ' +
              'session only; this page keeps no copy. ', localInfo),
           loginForm),
        el('div', {class: 'gl-panes'}, left.node, right.node),
        el('div', {class: 'gl-submit'}, label, sync, submitButton),
        el('section', {class: 'card wide'}, el('h3', null, 'Transfers'), transfers));
      drawTasks();

      ctx.api('GET', 'local_collection').then(function (found) {
        found = obj(found);
        if (typeof found.collection === 'string' && found.collection) {
          localInfo.textContent = 'This endpoint\'s own collection ("local"): ' + found.collection +
                                  ' (from ' + txt(found.source) + ').';
          left.setCollection('local');
        } else {
          localInfo.textContent = 'This endpoint has no local collection.';
        }
      }, function () {});
      ctx.every(REFRESH_MS, function () {
        if (authBadge.className.indexOf('ok') < 0) return null;
        return loadTasks();
      });
    }
  });
})();

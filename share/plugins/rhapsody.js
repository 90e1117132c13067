/* rhapsody: task sessions over the rhapsody plugin's routes (docs/plugins.md).
 *
 * The page's own session (registered by the shell, on the endpoint's default backend)
 * is shown first; the sessions table (`GET list_sessions`) lets the page follow any
 * other session of the plugin, the SDK's too. For the session shown: its statistics
 * (`GET statistics/<sid>`), a live task table (`GET list_tasks/<sid>`, then kept current
 * by `task_status` notifications), a task's details (`GET task/<sid>/<uid>`: stdout,
 * stderr, the return value's text, the exception with its traceback), cancel and cancel
 * all, and a form that submits executable tasks. Everything from the endpoint reaches
 * the DOM as text, through el().
 */
(function () {
  'use strict';
  var X = window.OrbitExplorer;
  if (!X) return;
  var u = X.util, el = X.el, ownValue = X.ownValue;  // states from the data are own keys only

  /** statistics and the sessions table are re-read this often; the task table too,
   * though notifications keep it live in between */
  var REFRESH_MS = 3000;
  var TASKS_SHOWN = 200;
  var TERMINAL = {DONE: true, FAILED: true, CANCELED: true};
  var STATE_BADGE = {DONE: 'ok', FAILED: 'bad', CANCELED: 'warn', RUNNING: 'info', NEW: ''};
  var STYLE =
    '.rh-form{display:flex;flex-wrap:wrap;gap:8px;align-items:end}' +
    '.rh-form label{display:flex;flex-direction:column;font-size:12px;color:var(--muted);gap:2px}' +
    '.rh-form input,.rh-form select,.rh-tools select{font:inherit;padding:3px 6px;border:1px solid var(--line);' +
    'border-radius:5px;background:var(--panel)}' +
    '.rh-form input.wide{min-width:18em}' +
    '.rh-counts{display:flex;flex-wrap:wrap;gap:6px;margin:6px 0}' +
    '.rh-out{font-family:var(--mono);font-size:12.5px;white-space:pre-wrap;word-break:break-all;' +
    'max-height:22em;overflow:auto;background:var(--bg);border:1px solid var(--line);border-radius:5px;padding:6px;margin:4px 0}' +
    'tr.rh-current td{background:var(--bg)}';

  function obj(v) { return v && typeof v === 'object' && !Array.isArray(v) ? v : {}; }
  function arr(v) { return Array.isArray(v) ? v : []; }
  function txt(v) { return v === null || v === undefined || v === '' ? '—' : String(v); }
  function badge(state) {
    return el('span', {class: 'badge ' + (ownValue(STATE_BADGE, state) || ''), 'data-state': String(state)}, txt(state));
  }
  function words(line) { return line.trim() ? line.trim().split(/\s+/) : []; }

  X.registerPlugin('rhapsody', {
    title: 'Tasks',
    render: function (container, ctx) {
      var own = null;            // the page's session
      var shown = null;          // the session whose tasks are shown
      var tasks = {};            // uid -> summary of the session shown
      var order = [];            // uids in submission order
      var detailUid = null;

      var errorBox = el('div', {class: 'error-box', hidden: true, 'data-testid': 'rhapsody-error'});
      var sessionsBox = el('div', {'data-testid': 'rhapsody-sessions'}, 'loading…');
      var statsBox = el('div', {'data-testid': 'rhapsody-stats'}, 'loading…');
      var countsBox = el('div', {class: 'rh-counts', 'data-testid': 'rhapsody-counts'});
      var tableBox = el('div', {'data-testid': 'rhapsody-tasks'});
      var detailBox = el('div', {'data-testid': 'rhapsody-detail', class: 'muted'}, 'Pick a task to see its output.');
      var shownLabel = el('span', {class: 'mono', 'data-testid': 'rhapsody-shown'});
      var filter = el('select', {'aria-label': 'state filter', 'data-testid': 'rhapsody-filter',
                                 onchange: function () { drawTasks(); }},
        ['all', 'NEW', 'RUNNING', 'DONE', 'FAILED', 'CANCELED'].map(function (s) {
          return el('option', {value: s}, s);
        }));

      var exe = el('input', {type: 'text', class: 'wide', value: '/bin/echo', 'aria-label': 'executable',
                             'data-testid': 'rhapsody-exe'});
      var args = el('input', {type: 'text', class: 'wide', value: 'hello', 'aria-label': 'arguments',
                              'data-testid': 'rhapsody-args'});
      var copies = el('input', {type: 'number', min: '1', max: '1000', value: '1', 'aria-label': 'copies',
                                'data-testid': 'rhapsody-copies', style: 'width:6em'});
      var name = el('input', {type: 'text', value: '', placeholder: 'optional', 'aria-label': 'task name',
                              'data-testid': 'rhapsody-name'});
      var shell = el('input', {type: 'checkbox', 'aria-label': 'run through the shell', 'data-testid': 'rhapsody-shell'});
      var submitButton = el('button', {type: 'button', 'data-testid': 'rhapsody-submit', onclick: submit}, 'Submit');
      var submitNote = el('span', {class: 'muted', 'data-testid': 'rhapsody-submitted'});

      function showError(prefix, err) {
        if (!ctx.active) return;
        errorBox.hidden = false;
        errorBox.textContent = prefix + ': ' + u.describeError(err);
      }
      function clearError() { errorBox.hidden = true; errorBox.textContent = ''; }

      function api(method, path, body) {
        return ctx.api(method, path + u.seg(shown), body);
      }

      // -- the session shown ------------------------------------------------------------
      function show(sid) {
        if (sid === shown) return Promise.resolve();
        shown = sid;
        tasks = {};
        order = [];
        detailUid = null;
        u.replace(detailBox, 'Pick a task to see its output.');
        u.replace(shownLabel, sid);
        return refresh();
      }

      function refresh() {
        if (!shown) return Promise.resolve();
        return Promise.all([loadStats(), loadTasks(), loadSessions()]);
      }

      function loadStats() {
        return api('GET', 'statistics/').then(function (s) {
          if (!ctx.active) return;
          s = obj(s);
          var opts = obj(s.options);
          u.replace(statsBox, u.kvTable({
            session: txt(s.sid), state: txt(s.state), backend: txt(opts.backend) +
              (opts.dask_scheduler ? ' (' + opts.dask_scheduler + ')' : '') +
              (opts.workers ? ', ' + opts.workers + ' workers' : ''),
            tasks: txt(s.total), finished: txt(s.finished), active: txt(s.active),
            'tasks/s': txt(s.tasks_per_s), error: txt(s.error)
          }));
          var counts = obj(s.counts);
          u.replace(countsBox, Object.keys(counts).sort().map(function (k) {
            return el('span', {class: 'badge ' + (ownValue(STATE_BADGE, k) || ''), 'data-testid': 'rhapsody-count-' + k},
              k + ' ' + counts[k]);
          }));
        }, function (err) { showError('statistics', err); });
      }

      function loadTasks() {
        var sid = shown;
        return api('GET', 'statistics/').then(function (s) {
          var total = obj(s).total || 0;
          var offset = Math.max(0, total - TASKS_SHOWN);
          return ctx.api('GET', 'list_tasks/' + u.seg(sid) + '?offset=' + offset + '&limit=' + TASKS_SHOWN);
        }).then(function (data) {
          if (!ctx.active || sid !== shown) return;
          var fresh = {}, freshOrder = [];
          arr(obj(data).tasks).forEach(function (t) {
            t = obj(t);
            var known = tasks[t.uid];
            // a notification may already have moved it on; never move a task back
            if (known && ownValue(TERMINAL, known.state) && !ownValue(TERMINAL, t.state)) t.state = known.state;
            fresh[t.uid] = t;
            freshOrder.push(t.uid);
          });
          tasks = fresh;
          order = freshOrder;
          drawTasks();
        }, function (err) { showError('tasks', err); });
      }

      function drawTasks() {
        var want = filter.value;
        var rows = order.slice().reverse().filter(function (uid) {
          return want === 'all' || obj(tasks[uid]).state === want;
        }).map(function (uid) {
          var t = obj(tasks[uid]);
          var cancel = ownValue(TERMINAL, t.state) ? '' : el('button', {type: 'button', 'data-testid': 'rhapsody-cancel',
            onclick: function () { cancelTask(uid); }}, 'cancel');
          var open = el('button', {type: 'button', 'data-testid': 'rhapsody-open',
            onclick: function () { openTask(uid); }}, txt(uid));
          var row = [open, txt(t.name), txt(t.kind), badge(t.state), txt(t.exit_code),
                     t.finished ? u.fmtTime(new Date(t.finished * 1000)) : '—', cancel];
          return row;
        });
        u.replace(tableBox, u.table([{label: 'task'}, {label: 'name'}, {label: 'kind'}, {label: 'state'},
          {label: 'exit', num: true}, {label: 'finished'}, {label: ''}], rows,
          {empty: order.length ? 'no task in this state' : 'no tasks yet'}));
        var trs = tableBox.querySelectorAll('tbody tr');
        for (var i = 0; i < trs.length; i++) trs[i].setAttribute('data-testid', 'rhapsody-task-row');
      }

      function loadSessions() {
        return ctx.api('GET', 'list_sessions').then(function (data) {
          if (!ctx.active) return;
          var rows = arr(obj(data).sessions).map(function (s) {
            s = obj(s);
            var view = s.sid === shown ? el('span', {class: 'badge info'}, 'shown')
              : el('button', {type: 'button', 'data-testid': 'rhapsody-view',
                              onclick: function () { show(s.sid); }}, 'show');
            return [el('span', {class: 'mono'}, txt(s.sid) + (s.sid === own ? ' (this page)' : '')),
                    txt(s.backend), txt(s.state), txt(s.tasks),
                    typeof s.idle_s === 'number' ? u.fmtDuration(s.idle_s) : '—', view];
          });
          u.replace(sessionsBox, u.table([{label: 'session'}, {label: 'backend'}, {label: 'state'},
            {label: 'tasks', num: true}, {label: 'idle'}, {label: ''}], rows, {empty: 'no sessions'}));
        }, function (err) { showError('sessions', err); });
      }

      // -- one task ---------------------------------------------------------------------
      function openTask(uid) {
        detailUid = uid;
        var sid = shown;
        return ctx.api('GET', 'task/' + u.seg(sid) + '/' + u.seg(uid)).then(function (t) {
          if (!ctx.active || detailUid !== uid || sid !== shown) return;
          t = obj(t);
          var parts = [el('h3', null, 'Task ' + txt(t.uid)),
            u.kvTable({name: txt(t.name), kind: txt(t.kind), state: txt(t.state), 'exit code': txt(t.exit_code),
                       created: t.created ? u.fmtTime(new Date(t.created * 1000)) : '—',
                       finished: t.finished ? u.fmtTime(new Date(t.finished * 1000)) : '—'})];
          function out(label, text, id) {
            if (text === undefined || text === null) return;
            parts.push(el('div', {class: 'muted'}, label));
            parts.push(el('pre', {class: 'rh-out', 'data-testid': id}, String(text)));
          }
          out('stdout', t.stdout, 'rhapsody-stdout');
          out('stderr', t.stderr, 'rhapsody-stderr');
          out('return value', t.return_text, 'rhapsody-return');
          var exc = obj(t.exception);
          if (exc.type) {
            out('exception', exc.type + ': ' + txt(exc.message), 'rhapsody-exception');
            out('traceback', exc.traceback, 'rhapsody-traceback');
          }
          detailBox.className = '';
          u.replace(detailBox, parts);
        }, function (err) { showError('task ' + uid, err); });
      }

      function cancelTask(uid) {
        clearError();
        return ctx.api('POST', 'cancel/' + u.seg(shown) + '/' + u.seg(uid)).then(function () {
          return refresh();
        }, function (err) { showError('cancel ' + uid, err); });
      }

      function cancelAll() {
        if (!window.confirm('Cancel every unfinished task of session ' + shown + '?')) return;
        clearError();
        return api('POST', 'cancel_all/').then(function (r) {
          u.replace(submitNote, 'cancelled ' + txt(obj(r).cancelled) + ' tasks');
          return refresh();
        }, function (err) { showError('cancel all', err); });
      }

      // -- submit -----------------------------------------------------------------------
      function submit() {
        clearError();
        var n = parseInt(copies.value, 10);
        if (!(n >= 1 && n <= 1000)) { showError('submit', new Error('copies must be 1 to 1000')); return; }
        if (!exe.value.trim()) { showError('submit', new Error('give an executable')); return; }
        var template = shell.checked
          ? {executable: [exe.value.trim()].concat(words(args.value)).join(' '), shell: true}
          : {executable: exe.value.trim(), arguments: words(args.value)};
        if (name.value.trim()) template.name = name.value.trim();
        var items = [];
        for (var i = 0; i < n; i++) items.push({});
        submitButton.disabled = true;
        return ctx.withSession(function (sid) {
          return ctx.api('POST', 'submit/' + u.seg(shown || sid), {template: template, items: items});
        }).then(function (r) {
          var uids = arr(obj(r).uids);
          u.replace(submitNote, 'submitted ' + uids.length + (uids.length === 1 ? ' task: ' + uids[0] : ' tasks'));
          return refresh();
        }, function (err) { showError('submit', err); }).then(function () { submitButton.disabled = false; });
      }

      // -- live -------------------------------------------------------------------------
      ctx.onNotification(function (n) {
        var data = obj(n.data);
        if (data.sid !== shown) return;
        if (n.topic === 'task_status') {
          var changed = false;
          Object.keys(obj(data.tasks)).forEach(function (uid) {
            var state = data.tasks[uid];
            if (tasks[uid]) {
              if (!ownValue(TERMINAL, tasks[uid].state)) { tasks[uid].state = state; changed = true; }
            } else {
              tasks[uid] = {uid: uid, state: state};
              order.push(uid);
              changed = true;
            }
          });
          while (order.length > TASKS_SHOWN) delete tasks[order.shift()];
          if (changed) drawTasks();
          if (detailUid && ownValue(TERMINAL, data.tasks[detailUid])) openTask(detailUid);
        } else if (n.topic === 'session_status') {
          loadStats();
        }
      });

      var style = el('style', null, STYLE);
      u.replace(container,
        style,
        errorBox,
        el('section', {class: 'card wide'}, el('h3', null, 'Session ', shownLabel), statsBox, countsBox),
        el('section', {class: 'card wide'}, el('h3', null, 'Run an executable'),
          el('div', {class: 'rh-form'},
            el('label', null, 'executable', exe), el('label', null, 'arguments', args),
            el('label', null, 'copies', copies), el('label', null, 'name', name),
            el('label', null, 'shell', shell), submitButton, submitNote)),
        el('section', {class: 'card wide'}, el('h3', null, 'Tasks'),
          el('div', {class: 'toolbar rh-tools'}, filter,
            el('button', {type: 'button', 'data-testid': 'rhapsody-cancel-all', onclick: cancelAll}, 'Cancel all'),
            el('span', {class: 'muted'}, 'the last ' + TASKS_SHOWN + ' tasks, newest first')),
          tableBox),
        el('section', {class: 'card wide'}, detailBox),
        el('section', {class: 'card wide'}, el('h3', null, 'Sessions'), sessionsBox));

      return ctx.session().then(function (sid) {
        own = sid;
        return show(sid);
      }).then(function () {
        if (ctx.active) ctx.every(REFRESH_MS, refresh);
      }, function (err) { showError('session', err); });
    }
  });
})();

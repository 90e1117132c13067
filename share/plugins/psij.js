/* psij: submit, watch and cancel jobs on one endpoint (docs/plugins.md, "The built-in psij plugin").
 *
 * The job table is read once from `GET list_jobs/<sid>` (and every 30 s, which also keeps
 * the session alive) and kept current by the `job_status` notifications, so a row changes
 * state the moment the endpoint reports it. The detail view streams a job's stdout and
 * stderr with `GET status/<sid>/<job>?stdout_offset=&stderr_offset=`, asking only for
 * what it has not shown yet. When the endpoint also runs queue_info, the queue and account
 * fields are menus filled from it. Everything received is shown as text, through el().
 */
(function () {
  'use strict';
  var X = window.OrbitExplorer;
  if (!X) return;
  var u = X.util, el = X.el, ownValue = X.ownValue;  // states from the data are own keys only

  var LIST_MS = 30000;          // the job list is re-read this often (notifications do the rest)
  var OUTPUT_MS = 1000;         // a running job's output is asked for this often while shown
  var OUTPUT_KEEP = 512 * 1024; // characters of each stream kept on the page (the oldest go first)
  var TERMINAL = {COMPLETED: 1, FAILED: 1, CANCELED: 1};
  var STATE_BADGE = {NEW: 'info', QUEUED: 'info', ACTIVE: 'warn', COMPLETED: 'ok', FAILED: 'bad', CANCELED: 'bad'};
  var STYLE =
    '.pj-form{display:grid;grid-template-columns:repeat(auto-fill,minmax(190px,1fr));gap:8px 12px}' +
    '.pj-form label{display:flex;flex-direction:column;gap:3px;font-size:12.5px;color:var(--muted)}' +
    '.pj-form input,.pj-form select,.pj-form textarea{font:inherit;color:var(--text);padding:4px 6px;' +
    'border:1px solid var(--line);border-radius:5px;background:var(--panel);min-width:0}' +
    '.pj-form .full{grid-column:1/-1}.pj-form [hidden]{display:none}' +
    '.pj-rows{grid-column:1/-1;display:flex;flex-direction:column;gap:4px}' +
    '.pj-row{display:flex;gap:6px;align-items:center}.pj-row input{flex:1;min-width:0}' +
    '.pj-actions{grid-column:1/-1;display:flex;gap:8px;align-items:center;flex-wrap:wrap}' +
    '.pj-out{max-height:320px;overflow:auto;background:#0f172a;color:#e2e8f0;padding:8px;border-radius:6px;' +
    'font-family:var(--mono);font-size:12.5px;white-space:pre-wrap;word-break:break-all;margin:4px 0 10px}' +
    '.pj-table td{white-space:nowrap}.pj-table td.pj-what{white-space:normal;word-break:break-all}' +
    '.pj-table tr.sel td{background:var(--accent-soft)}' +
    '.pj-table button{font-size:12px;padding:1px 7px;margin-left:4px}';

  function obj(v) { return v && typeof v === 'object' && !Array.isArray(v) ? v : {}; }
  function arr(v) { return Array.isArray(v) ? v : []; }
  function txt(v) { return v === null || v === undefined || v === '' ? '—' : u.toText(v); }
  function when(epoch) { return typeof epoch === 'number' ? u.fmtTime(new Date(epoch * 1000)) : '—'; }
  function submitKey() {
    var b = new Uint8Array(16);
    window.crypto.getRandomValues(b);
    return Array.prototype.map.call(b, function (x) { return (x < 16 ? '0' : '') + x.toString(16); }).join('');
  }

  /** Queues and accounts from the endpoint's queue_info, if it has one: {queues: [...], def, accounts: [...]}. */
  function queueChoices(ctx) {
    var call = ctx.call;
    return call('POST', '/endpoint/list').then(function (topo) {
      var eps = obj(obj(obj(topo).data).endpoints);
      var plugins = obj(obj(eps[ctx.endpoint]).plugins);
      var name = Object.keys(plugins).filter(function (k) { return obj(plugins[k]).type === 'queue_info'; })[0];
      if (!name) return null;
      var base = '/' + u.seg(ctx.endpoint) + '/' + u.seg(name) + '/';
      return call('POST', base + 'register_session').then(function (s) {
        var sid = u.seg(obj(s).sid);
        return Promise.all([call('GET', base + 'get_info/' + sid),
                            call('GET', base + 'list_allocations/' + sid).then(null, function () { return {}; })])
          .then(function (got) {
            call('POST', base + 'unregister_session/' + sid).then(null, function () {});
            var qs = obj(obj(got[0]).queues), def = null;
            Object.keys(qs).forEach(function (q) { if (obj(qs[q])['default']) def = q; });
            var accounts = {};
            arr(obj(got[1]).allocations).forEach(function (a) { if (obj(a).account) accounts[a.account] = 1; });
            return {queues: Object.keys(qs).sort(), def: def, accounts: Object.keys(accounts).sort()};
          });
      });
    }).then(null, function () { return null; });   // no queue_info, or it failed: free text
  }

  /** A text field, or a menu (with an empty first choice) when there are options. */
  function choiceField(label, testid, options, preferred, placeholder) {
    if (options && options.length) {
      var sel = el('select', {'data-testid': testid},
        el('option', {value: ''}, '(default)'),
        options.map(function (o) { return el('option', {value: o}, o + (o === preferred ? ' (default)' : '')); }));
      return {node: el('label', null, label, sel), input: sel};
    }
    var input = el('input', {type: 'text', placeholder: placeholder || '', 'data-testid': testid});
    return {node: el('label', null, label, input), input: input};
  }

  /** Rows of name = value pairs (custom attributes, environment). */
  function pairRows(title, keyHint, testid) {
    var box = el('div', {class: 'pj-rows', 'data-testid': testid});
    function add() {
      var row = el('div', {class: 'pj-row'},
        el('input', {type: 'text', placeholder: keyHint, 'aria-label': title + ' name', class: 'k'}),
        el('input', {type: 'text', placeholder: 'value', 'aria-label': title + ' value', class: 'v'}),
        el('button', {type: 'button', 'aria-label': 'remove', onclick: function () { box.removeChild(row); }}, '×'));
      box.insertBefore(row, addBtn);
    }
    var addBtn = el('button', {type: 'button', 'data-testid': testid + '-add', onclick: add}, '+ ' + title);
    box.appendChild(el('span', {class: 'muted'}, title));
    box.appendChild(addBtn);
    return {node: box, values: function () {
      var out = {};
      Array.prototype.forEach.call(box.querySelectorAll('.pj-row'), function (row) {
        var k = row.querySelector('.k').value.trim(), v = row.querySelector('.v').value;
        if (k) out[k] = v;
      });
      return out;
    }};
  }

  // -- launch an endpoint as a batch job (submit_tunneled / tunnel_status) ----------------
  var LAUNCH_POLL_MS = 3000;    // launches in flight are asked for their state this often (notifications do the rest)
  var LAUNCH_BADGE = {pending: 'info', starting: 'warn', connected: 'ok', failed: 'bad', ended: ''};
  var LAUNCH_ACTIVE = {pending: 1, starting: 1, connected: 1};

  /** The "Launch an endpoint" card: a child endpoint <this endpoint>.<n> as a batch job, its state live. */
  function launchSection(ctx) {
    var launches = {};          // child name -> the latest launch we know
    var errorBox = el('div', {class: 'error-box', role: 'alert', 'data-testid': 'launch-error', hidden: true});
    function showError(err) {
      errorBox.hidden = !err;
      u.replace(errorBox, err ? u.describeError(err) : '');
    }
    var executor = el('select', {'data-testid': 'launch-executor'});
    var queue = el('input', {type: 'text', placeholder: 'partition', 'data-testid': 'launch-queue'});
    var account = el('input', {type: 'text', placeholder: 'project / account', 'data-testid': 'launch-account'});
    var duration = el('input', {type: 'text', placeholder: 'HH:MM:SS', 'data-testid': 'launch-duration'});
    var nodes = el('input', {type: 'number', min: 1, placeholder: '1', 'data-testid': 'launch-nodes'});
    var plugins = el('input', {type: 'text', value: 'default', 'data-testid': 'launch-plugins'});
    var name = el('input', {type: 'text', placeholder: ctx.endpoint + '.<n>', 'data-testid': 'launch-name'});
    var tunnel = el('select', {'data-testid': 'launch-tunnel', onchange: tunnelFields},
      ['none', 'forward', 'reverse'].map(function (m) { return el('option', {value: m}, m); }));
    var via = el('input', {type: 'text', placeholder: '[user@]host[:port]', 'data-testid': 'launch-via'});
    var viaLabel = el('label', {hidden: true}, 'ssh host', via);
    var setup = el('input', {type: 'text', placeholder: 'module load python', 'data-testid': 'launch-setup'});
    var launchBtn = el('button', {type: 'submit', class: 'primary', 'data-testid': 'launch-submit'}, 'Launch');
    var form = el('form', {class: 'pj-form', 'data-testid': 'launch-form', onsubmit: launch},
      el('label', null, 'executor', executor), el('label', null, 'queue', queue),
      el('label', null, 'account', account), el('label', null, 'duration', duration),
      el('label', null, 'nodes', nodes), el('label', null, 'plugins', plugins),
      el('label', null, 'name', name), el('label', null, 'tunnel', tunnel), viaLabel,
      el('label', {class: 'full'}, 'setup commands', setup),
      el('div', {class: 'pj-actions'}, launchBtn));
    var tableBox = el('div', {'data-testid': 'launch-list'});

    function tunnelFields() {
      viaLabel.hidden = tunnel.value === 'none';
      viaLabel.firstChild.textContent = tunnel.value === 'reverse' ? 'compute node (ssh)' : 'login host (ssh)';
    }
    function body() {
      var b = {executor: executor.value, plugins: plugins.value.trim() || 'default', tunnel: tunnel.value};
      var at = {};
      if (queue.value.trim()) at.queue_name = queue.value.trim();
      if (account.value.trim()) at.account = account.value.trim();
      if (duration.value.trim()) at.duration = duration.value.trim();
      if (nodes.value) at.node_count = parseInt(nodes.value, 10);
      if (Object.keys(at).length) b.attributes = at;
      if (name.value.trim()) b.name = name.value.trim();
      if (setup.value.trim()) b.setup = setup.value.trim();
      if (tunnel.value === 'forward' && via.value.trim()) b.tunnel_via = via.value.trim();
      if (tunnel.value === 'reverse' && via.value.trim()) b.tunnel_node = via.value.trim();
      return b;
    }
    function launch(ev) {
      ev.preventDefault();
      showError(null);
      launchBtn.disabled = true;
      ctx.withSession(function (sid) {
        return ctx.api('POST', 'submit_tunneled/' + u.seg(sid), body());
      }).then(function (l) { if (ctx.active) merge(l); }, function (err) { if (ctx.active) showError(err); })
        .then(function () { launchBtn.disabled = false; });
    }
    function merge(l) {
      l = obj(l);
      if (typeof l.name !== 'string') return;
      var old = launches[l.name];
      if (old && (l.updated || 0) < (old.updated || 0)) return;    // an older answer overtaken
      launches[l.name] = Object.assign({}, old || {}, l);
      draw();
    }
    function cancel(l) {
      if (!window.confirm('Cancel the job of endpoint ' + l.name + (l.native_id ? ' (native id ' + l.native_id + ')' : '') + '?')) return;
      ctx.withSession(function (sid) {
        return ctx.api('POST', 'cancel/' + u.seg(sid) + '/' + u.seg(l.job_id));
      }).then(function () { if (ctx.active) poll(); }, function (err) { if (ctx.active) showError(err); });
    }
    function draw() {
      var rows = Object.keys(launches).map(function (k) { return launches[k]; })
        .sort(function (a, b) { return (b.created || 0) - (a.created || 0); });
      var table = u.table([{label: 'endpoint'}, {label: 'state'}, {label: 'tunnel'}, {label: 'executor'},
                           {label: 'native id'}, {label: 'reason'}, {label: ''}],
        rows.map(function (l) {
          return [
            l.state === 'connected'
              ? el('a', {href: '#/' + encodeURIComponent(l.name), 'data-testid': 'launch-child'}, l.name)
              : el('span', {class: 'mono'}, l.name),
            el('span', {class: 'badge ' + (LAUNCH_BADGE[l.state] || ''), 'data-testid': 'launch-state'}, txt(l.state)),
            txt(l.tunnel), txt(l.executor), txt(l.native_id),
            el('span', {class: 'pj-what', 'data-testid': 'launch-reason'}, txt(l.reason)),
            ownValue(LAUNCH_ACTIVE, l.state) && l.job_id
              ? el('button', {type: 'button', 'data-testid': 'launch-cancel', onclick: function () { cancel(l); }}, 'Cancel')
              : ''
          ];
        }), {empty: 'no endpoints launched from this page yet'});
      table.classList.add('pj-table');
      Array.prototype.forEach.call(table.querySelectorAll('tbody tr'), function (tr, i) {
        if (rows[i]) tr.setAttribute('data-launch', rows[i].name);
      });
      u.replace(tableBox, table);
    }
    function poll() {
      var active = Object.keys(launches).filter(function (k) { return ownValue(LAUNCH_ACTIVE, launches[k].state); });
      return Promise.all(active.map(function (k) {
        return ctx.api('GET', 'tunnel_status/' + u.seg(k)).then(function (l) { if (ctx.active) merge(l); },
                                                                 function () {});
      }));
    }
    ctx.every(LAUNCH_POLL_MS, poll);
    draw();
    tunnelFields();
    return {
      node: el('section', {class: 'card wide', 'data-testid': 'launch-card'},
               el('h3', null, 'Launch an endpoint'),
               el('p', {class: 'muted'}, 'Start a child endpoint of ' + ctx.endpoint +
                  ' as a batch job; it appears in the tree under ' + ctx.endpoint + ' once it registers.'),
               errorBox, form, tableBox),
      merge: merge,
      setExecutors: function (names, def) {
        u.replace(executor, names.map(function (n) { return el('option', {value: n}, n); }));
        executor.value = def || 'local';
      }
    };
  }

  X.registerPlugin('psij', {
    title: 'Jobs',
    render: function (container, ctx) {
      var jobs = {};            // job id -> the latest we know
      var selected = null;      // the job shown in the detail view
      var out = null;           // its output state {job, stdout, stderr, timer}
      if (!document.getElementById('pj-style')) document.head.appendChild(el('style', {id: 'pj-style'}, STYLE));

      var errorBox = el('div', {class: 'error-box', role: 'alert', 'data-testid': 'psij-error', hidden: true});
      function showError(err) {
        errorBox.hidden = !err;
        u.replace(errorBox, err ? u.describeError(err) : '');
      }

      // -- the form ------------------------------------------------------------------
      var executor = el('select', {'data-testid': 'psij-executor', onchange: batchFields});
      var executable = el('input', {type: 'text', required: true, value: '/bin/echo', 'data-testid': 'psij-executable'});
      var args = el('textarea', {rows: 2, placeholder: 'one argument per line', 'data-testid': 'psij-arguments'});
      var directory = el('input', {type: 'text', placeholder: 'absolute path (optional)', 'data-testid': 'psij-directory'});
      var queue = choiceField('queue', 'psij-queue', null, null, 'partition');
      var account = choiceField('account', 'psij-account', null, null, 'project / account');
      var duration = el('input', {type: 'text', placeholder: 'HH:MM:SS', 'data-testid': 'psij-duration'});
      var nodes = el('input', {type: 'number', min: 1, placeholder: '1', 'data-testid': 'psij-nodes'});
      var procs = el('input', {type: 'number', min: 1, placeholder: '1', 'data-testid': 'psij-processes'});
      var custom = pairRows('custom attribute', 'slurm.constraint', 'psij-custom');
      var env = pairRows('environment variable', 'NAME', 'psij-env');
      var submitBtn = el('button', {type: 'submit', class: 'primary', 'data-testid': 'psij-submit'}, 'Submit');
      var submitted = el('span', {class: 'muted', 'data-testid': 'psij-submitted'});
      var batchOnly = [queue.node, account.node, el('label', null, 'duration', duration), custom.node];
      var form = el('form', {class: 'pj-form', 'data-testid': 'psij-form', onsubmit: submit},
        el('label', null, 'executor', executor),
        el('label', {class: 'full'}, 'executable', executable),
        el('label', {class: 'full'}, 'arguments', args),
        el('label', {class: 'full'}, 'directory', directory),
        batchOnly, el('label', null, 'nodes', nodes), el('label', null, 'processes', procs),
        env.node, el('div', {class: 'pj-actions'}, submitBtn, submitted));

      function isBatch() { return ['local', 'flux', 'rp'].indexOf(executor.value) < 0; }
      /** queue, account, duration and custom attributes only mean something to a batch executor */
      function batchFields() {
        batchOnly.forEach(function (n) { n.hidden = !isBatch(); });
      }

      function spec() {
        var s = {executable: executable.value.trim()};
        var a = args.value.split('\n').filter(function (line) { return line !== ''; });
        if (a.length) s.arguments = a;
        if (directory.value.trim()) s.directory = directory.value.trim();
        var e = env.values();
        if (Object.keys(e).length) s.environment = e;
        var at = {};
        if (nodes.value) at.node_count = parseInt(nodes.value, 10);
        if (procs.value) at.process_count = parseInt(procs.value, 10);
        if (isBatch()) {
          if (queue.input.value.trim()) at.queue_name = queue.input.value.trim();
          if (account.input.value.trim()) at.account = account.input.value.trim();
          if (duration.value.trim()) at.duration = duration.value.trim();
          var c = custom.values();
          Object.keys(c).forEach(function (k) { at[k] = c[k]; });
        }
        if (Object.keys(at).length) s.attributes = at;
        return s;
      }

      function submit(ev) {
        ev.preventDefault();
        showError(null);
        submitBtn.disabled = true;
        var body = {job_spec: spec(), executor: executor.value, key: submitKey()};
        ctx.withSession(function (sid) {
          return ctx.api('POST', 'submit/' + u.seg(sid), body);
        }).then(function (job) {
          if (!ctx.active) return;
          submitted.textContent = 'submitted ' + job.job_id + (job.native_id ? ' (native id ' + job.native_id + ')' : '');
          merge(job);
          select(job.job_id);
        }, function (err) { if (ctx.active) showError(err); })
          .then(function () { submitBtn.disabled = false; });
      }

      // -- the table -----------------------------------------------------------------
      var tableBox = el('div', {'data-testid': 'psij-jobs'});
      function merge(job) {
        job = obj(job);
        if (!job.job_id) return;
        var old = jobs[job.job_id];
        // a notification may overtake the list answer: never go back to an earlier state
        if (old && ownValue(TERMINAL, old.state) && !ownValue(TERMINAL, job.state)) return;
        jobs[job.job_id] = Object.assign({}, old || {}, job);
        drawTable();
        if (selected === job.job_id) drawDetail();
      }
      function drawTable() {
        var rows = Object.keys(jobs).map(function (k) { return jobs[k]; })
          .sort(function (a, b) { return (b.created || 0) - (a.created || 0); });
        var table = u.table([{label: 'job'}, {label: 'what'}, {label: 'executor'}, {label: 'native id'},
                             {label: 'state'}, {label: 'exit', num: true}, {label: 'submitted'}, {label: ''}],
          rows.map(function (j) {
            var tr = [
              el('span', {class: 'mono'}, j.job_id),
              el('span', {class: 'pj-what'}, j.name ? j.name + ' · ' + txt(j.executable) : txt(j.executable)),
              txt(j.executor), txt(j.native_id),
              el('span', {class: 'badge ' + (ownValue(STATE_BADGE, j.state) || ''), 'data-testid': 'psij-state'}, txt(j.state)),
              txt(j.exit_code), when(j.created),
              el('span', null,
                el('button', {type: 'button', 'data-testid': 'psij-open', onclick: function () { select(j.job_id); }}, 'Output'),
                ownValue(TERMINAL, j.state) ? null
                  : el('button', {type: 'button', 'data-testid': 'psij-cancel', onclick: function () { cancel(j); }}, 'Cancel'))
            ];
            return tr;
          }), {empty: 'no jobs yet'});
        table.classList.add('pj-table');
        Array.prototype.forEach.call(table.querySelectorAll('tbody tr'), function (tr, i) {
          if (!rows[i]) return;
          tr.setAttribute('data-job-id', rows[i].job_id);
          if (rows[i].job_id === selected) tr.classList.add('sel');
        });
        u.replace(tableBox, table);
      }
      function cancel(job) {
        if (!window.confirm('Cancel job ' + job.job_id + (job.native_id ? ' (native id ' + job.native_id + ')' : '') + '?')) return;
        ctx.withSession(function (sid) {
          return ctx.api('POST', 'cancel/' + u.seg(sid) + '/' + u.seg(job.job_id));
        }).then(function (j) { if (ctx.active) merge(j); }, function (err) { if (ctx.active) showError(err); });
      }

      // -- the detail view -----------------------------------------------------------
      var detail = el('section', {class: 'card wide', 'data-testid': 'psij-detail', hidden: true});
      var facts = el('div');
      var stdoutPre = el('pre', {class: 'pj-out', 'data-testid': 'psij-stdout'});
      var stderrPre = el('pre', {class: 'pj-out', 'data-testid': 'psij-stderr'});
      u.replace(detail, el('h3', null, 'Job'), facts, el('h4', null, 'stdout'), stdoutPre,
                el('h4', null, 'stderr'), stderrPre);

      function select(jobId) {
        if (out && out.stop) out.stop();
        selected = jobId;
        out = {job: jobId, stdout: 0, stderr: 0, done: false};
        stdoutPre.textContent = '';
        stderrPre.textContent = '';
        detail.hidden = false;
        drawTable();
        drawDetail();
        var mine = out;
        mine.stop = ctx.every(OUTPUT_MS, function () { return readOutput(mine); });
      }
      function drawDetail() {
        var j = jobs[selected];
        if (!j) return;
        u.replace(facts, u.kvTable({job: j.job_id, 'native id': txt(j.native_id), executor: txt(j.executor),
                                    state: txt(j.state), 'exit code': txt(j.exit_code), message: txt(j.message),
                                    history: arr(j.history).map(function (h) { return h[0] + ' ' + when(h[1]); }).join(' → ')}));
      }
      function append(pre, data) {
        if (!data) return;
        var text = pre.textContent + data;
        pre.textContent = text.length > OUTPUT_KEEP ? text.slice(text.length - OUTPUT_KEEP) : text;
      }
      function readOutput(mine) {
        if (mine.done) return Promise.resolve();
        return ctx.withSession(function (sid) {
          return ctx.api('GET', 'status/' + u.seg(sid) + '/' + u.seg(mine.job) + '?stdout_offset=' + mine.stdout +
                         '&stderr_offset=' + mine.stderr);
        }).then(function (st) {
          if (!ctx.active || out !== mine) return;
          st = obj(st);
          append(stdoutPre, obj(st.stdout).data);
          append(stderrPre, obj(st.stderr).data);
          mine.stdout = obj(st.stdout).offset || mine.stdout;
          mine.stderr = obj(st.stderr).offset || mine.stderr;
          var more = obj(st.stdout).more || obj(st.stderr).more;
          delete st.stdout; delete st.stderr;
          merge(st);
          if (ownValue(TERMINAL, st.state) && !more) { mine.done = true; if (mine.stop) mine.stop(); }
        }, function (err) { if (ctx.active) showError(err); });
      }

      // -- assembling, the list, the notifications -------------------------------------
      var launcher = launchSection(ctx);
      u.replace(container,
        el('section', {class: 'card wide'}, el('h3', null, 'Submit a job'), errorBox, form),
        el('section', {class: 'card wide'}, el('h3', null, 'Jobs'), tableBox),
        detail, launcher.node);
      drawTable();

      ctx.onNotification(function (n) {
        if (n.topic === 'job_status') merge(n.data);
        if (n.topic === 'tunnel_status') launcher.merge(n.data);
      });
      ctx.api('GET', 'executors').then(function (ex) {
        if (!ctx.active) return;
        ex = obj(ex);
        u.replace(executor, arr(ex.executors).map(function (name) {
          return el('option', {value: name}, name);
        }));
        executor.value = ex['default'] || 'local';
        batchFields();
        launcher.setExecutors(arr(ex.executors), ex['default']);
      }, function (err) { if (ctx.active) showError(err); });
      queueChoices(ctx).then(function (choices) {
        if (!ctx.active || !choices) return;
        var q = choiceField('queue', 'psij-queue', choices.queues, choices.def, 'partition');
        var a = choiceField('account', 'psij-account', choices.accounts, null, 'project / account');
        form.replaceChild(q.node, queue.node);
        form.replaceChild(a.node, account.node);
        batchOnly[0] = q.node;
        batchOnly[1] = a.node;
        queue = q;
        account = a;
        batchFields();
      }, function () { /* no choices: the plain fields stay (a lost login shows the login view) */ });
      ctx.every(LIST_MS, function () {
        return ctx.withSession(function (sid) {
          return ctx.api('GET', 'list_jobs/' + u.seg(sid));
        }).then(function (answer) {
          if (!ctx.active) return;
          arr(obj(answer).jobs).forEach(merge);
        }, function (err) { if (ctx.active) showError(err); });
      });
    }
  });
})();

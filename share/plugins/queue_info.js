/* queue_info: the batch queues of a machine with their availability, the jobs in them
 * (yours or everyone's), your accounts, and cancel with a confirmation. Data comes from
 * GET get_info, list_jobs / list_all_jobs and list_allocations; the endpoint caches the
 * scheduler's answers for 60 s, the Refresh button asks it to fetch them again.
 * All text goes through el() / textContent: nothing from the endpoint is HTML. */
(function () {
  'use strict';
  var X = window.OrbitExplorer;
  if (!X) return;
  var el = X.el, u = X.util;
  var REFRESH_MS = 30000;
  var TIMEOUT_MS = 120000;   // a few scheduler commands, each with its own timeout on the endpoint
  var ALL = '*';
  var SETTLE_MS = 1000, SETTLE_TRIES = 20;   // after a cancel: how often, how long to look again

  function obj(v) { return v && typeof v === 'object' && !Array.isArray(v) ? v : {}; }
  function arr(v) { return Array.isArray(v) ? v : []; }
  function num(v) { return typeof v === 'number' && isFinite(v); }
  function txt(v) { return v === null || v === undefined || v === '' ? '—' : String(v); }

  function limit(seconds) { return num(seconds) ? u.fmtDuration(seconds) : 'unlimited'; }
  function memory(mb) { return num(mb) ? u.fmtBytes(mb * 1048576) : '—'; }

  var STATE_BADGE = {UP: 'ok', RUNNING: 'ok', PENDING: 'info', COMPLETING: 'info', CONFIGURING: 'info',
                     SUSPENDED: 'warn', DRAIN: 'warn', INACTIVE: 'warn', DOWN: 'bad'};
  function stateBadge(state) {
    var word = txt(state);
    return el('span', {class: 'badge ' + (STATE_BADGE[word.split('+')[0]] || ''), 'data-testid': 'state'}, word);
  }

  function query(user, force) {
    var parts = [];
    if (user) parts.push('user=' + encodeURIComponent(user));
    if (force) parts.push('force=true');
    return parts.length ? '?' + parts.join('&') : '';
  }

  function queuesTable(queues, selected, onPick) {
    var names = Object.keys(queues).sort();
    if (!names.length) return el('div', {class: 'muted', 'data-testid': 'qi-no-queues'}, 'no queues here');
    var head = ['queue', 'state', 'time limit', 'default time', 'nodes available / total', 'idle',
                'CPUs / node', 'memory / node', 'GPUs / node', 'features'];
    return el('table', {class: 'grid', 'data-testid': 'qi-queues'},
      el('thead', null, el('tr', null, head.map(function (h, i) {
        return el('th', {scope: 'col', class: i >= 4 && i <= 8 ? 'num' : null}, h);
      }))),
      el('tbody', null, names.map(function (name) {
        var q = obj(queues[name]), nodes = obj(q.nodes);
        var gpus = num(q.gpus_per_node) && q.gpus_per_node
          ? q.gpus_per_node + (arr(q.gpu_types).length ? ' (' + arr(q.gpu_types).join(', ') + ')' : '') : '0';
        var pick = el('button', {type: 'button', class: 'linklike', 'data-action': 'pick',
                                 title: 'show the jobs in ' + name, onclick: function () { onPick(name); }}, name);
        return el('tr', {'data-queue': name, class: name === selected ? 'selected' : null},
          el('td', null, pick, q.default ? el('span', {class: 'badge info', 'data-testid': 'default'}, 'default') : null,
             q.usable === false ? el('span', {class: 'badge warn', title: 'you may not submit here'}, 'not yours') : null),
          el('td', null, stateBadge(q.state)),
          el('td', {'data-testid': 'limit'}, limit(q.time_limit_s)),
          el('td', null, num(q.default_time_s) ? u.fmtDuration(q.default_time_s) : '—'),
          el('td', {class: 'num', 'data-testid': 'available'}, txt(nodes.available) + ' / ' + txt(nodes.total)),
          el('td', {class: 'num'}, txt(nodes.idle)),
          el('td', {class: 'num'}, txt(q.cpus_per_node)),
          el('td', {class: 'num'}, memory(q.memory_per_node_mb)),
          el('td', {class: 'num'}, gpus),
          el('td', null, arr(q.features).join(', ') || '—'));
      })));
  }

  function jobsTable(jobs, onCancel) {
    if (!jobs.length) return el('div', {class: 'muted', 'data-testid': 'qi-no-jobs'}, 'no queued or running jobs');
    var head = ['job', 'name', 'user', 'account', 'queue', 'state', 'nodes', 'CPUs', 'time used / limit',
                'reason / nodes', ''];
    return el('table', {class: 'grid', 'data-testid': 'qi-jobs'},
      el('thead', null, el('tr', null, head.map(function (h, i) {
        return el('th', {scope: 'col', class: i === 6 || i === 7 ? 'num' : null}, h);
      }))),
      el('tbody', null, jobs.map(function (j) {
        j = obj(j);
        var used = num(j.time_used_s) ? u.fmtDuration(j.time_used_s) : '—';
        var where = j.state === 'RUNNING' ? txt(j.node_list) : txt(j.reason);
        return el('tr', {'data-job': txt(j.job_id)},
          el('td', {class: 'mono'}, txt(j.job_id)),
          el('td', {title: txt(j.name)}, txt(j.name)),
          el('td', null, txt(j.user)), el('td', null, txt(j.account)), el('td', null, txt(j.partition)),
          el('td', null, stateBadge(j.state)),
          el('td', {class: 'num'}, txt(j.nodes)), el('td', {class: 'num'}, txt(j.cpus)),
          el('td', null, used + ' / ' + limit(j.time_limit_s)),
          el('td', null, where),
          el('td', null, el('button', {type: 'button', 'data-action': 'cancel',
                                       onclick: function () { onCancel(j); }}, 'Cancel')));
      })));
  }

  function allocationsTable(allocations) {
    return u.table([{label: 'account'}, {label: 'user'}, {label: 'cluster'}, {label: 'partition'},
                    {label: 'QOS'}, {label: 'fairshare', num: true}, {label: 'limits'}],
      allocations.map(function (a) {
        a = obj(a);
        var limits = [];
        if (num(a.max_jobs)) limits.push(a.max_jobs + ' running jobs');
        if (num(a.max_submit)) limits.push(a.max_submit + ' submitted');
        if (num(a.max_wall_s)) limits.push(u.fmtDuration(a.max_wall_s) + ' per job');
        if (a.max_tres_per_job) limits.push(String(a.max_tres_per_job) + ' per job');
        if (a.grp_tres) limits.push('group ' + String(a.grp_tres));
        return [txt(a.account), txt(a.user), txt(a.cluster), txt(a.partition) === '—' ? 'any' : String(a.partition),
                arr(a.qos).join(', ') || '—', num(a.fairshare) ? a.fairshare.toFixed(3) : '—',
                limits.join('; ') || 'none'];
      }), {empty: 'no accounts (no accounting on this machine, or none for this user)'});
  }

  X.registerPlugin('queue_info', {
    title: 'Queues',

    render: function (container, ctx) {
      var state = {user: '', queue: null, queues: {}};
      var backend = el('span', {class: 'muted', 'data-testid': 'qi-backend'}, 'asking the scheduler…');
      var message = el('div', {'data-testid': 'qi-message', 'aria-live': 'polite'});
      var scope = el('select', {'data-testid': 'qi-scope', 'aria-label': 'whose jobs',
                                onchange: function () { state.user = scope.value; refresh(false); }},
        el('option', {value: ''}, 'my jobs and queues'), el('option', {value: ALL}, 'all users and queues'));
      var queuePick = el('select', {'data-testid': 'qi-queue-select', 'aria-label': 'queue',
                                    onchange: function () { state.queue = queuePick.value || null; loadJobs(false); }});
      var refreshButton = el('button', {type: 'button', 'data-action': 'refresh',
                                        onclick: function () { refresh(true); }}, 'Refresh');
      var queuesBox = el('div', null), jobsBox = el('div', null), allocBox = el('div', null);
      var jobsTitle = el('h3', null, 'Jobs');

      u.replace(container,
        el('section', {class: 'card wide'}, el('h3', null, 'Queues'),
          el('div', {class: 'toolbar'}, scope, refreshButton, backend), message, queuesBox),
        el('section', {class: 'card wide'}, jobsTitle, el('div', {class: 'toolbar'}, queuePick), jobsBox),
        el('section', {class: 'card wide'}, el('h3', null, 'Accounts'), allocBox));

      function failed(box, testid) {
        return function (err) {
          if (ctx.active) u.replace(box, el('div', {class: 'error-box', 'data-testid': testid}, u.describeError(err)));
        };
      }

      function pickQueue(name) {
        state.queue = name;
        queuePick.value = name;
        loadQueues(false);
        loadJobs(false);
      }

      function fillQueuePick() {
        var names = Object.keys(state.queues).sort();
        if (state.queue && names.indexOf(state.queue) < 0) state.queue = null;
        u.replace(queuePick, el('option', {value: ''}, 'all queues'), names.map(function (n) {
          return el('option', {value: n}, n);
        }));
        queuePick.value = state.queue || '';
      }

      function loadQueues(force) {
        return ctx.withSession(function (sid) {
          return ctx.api('GET', 'get_info/' + u.seg(sid) + query(state.user, force), null, {timeout: TIMEOUT_MS});
        }).then(function (info) {
          if (!ctx.active) return;
          state.queues = obj(info.queues);
          u.replace(backend, 'backend ' + txt(info.backend) + ' · scheduler asked at ' +
                    (num(info.fetched_at) ? u.fmtTime(new Date(info.fetched_at * 1000)) : '—'));
          fillQueuePick();
          u.replace(queuesBox, queuesTable(state.queues, state.queue, pickQueue));
        }, failed(queuesBox, 'qi-queues-error'));
      }

      /* A cancelled job takes a moment to end (the scheduler signals it, then cleans up):
       * ask again each second until it has left the list. */
      function untilGone(jobId, tries) {
        return loadJobs(true).then(function () {
          var still = jobsBox.querySelector('tr[data-job="' + jobId.replace(/[^\w.\[\]-]/g, '') + '"]');
          if (!still || tries <= 1 || !ctx.active) return;
          return new Promise(function (resolve) { window.setTimeout(resolve, SETTLE_MS); }).then(function () {
            return untilGone(jobId, tries - 1);
          });
        });
      }

      function loadJobs(force) {
        var q = query(state.user, force);
        u.replace(jobsTitle, state.queue ? 'Jobs in ' + state.queue : 'Jobs in all queues',
                  state.user === ALL ? ' (all users)' : ' (yours)');
        return ctx.withSession(function (sid) {
          var path = state.queue ? 'list_jobs/' + u.seg(sid) + '/' + u.seg(state.queue) : 'list_all_jobs/' + u.seg(sid);
          return ctx.api('GET', path + q, null, {timeout: TIMEOUT_MS});
        }).then(function (data) {
          if (ctx.active) u.replace(jobsBox, jobsTable(arr(data.jobs), cancel));
        }, failed(jobsBox, 'qi-jobs-error'));
      }

      function loadAllocations(force) {
        return ctx.withSession(function (sid) {
          return ctx.api('GET', 'list_allocations/' + u.seg(sid) + query(state.user, force), null, {timeout: TIMEOUT_MS});
        }).then(function (data) {
          if (ctx.active) u.replace(allocBox, el('div', {'data-testid': 'qi-allocations'}, allocationsTable(arr(data.allocations))));
        }, failed(allocBox, 'qi-allocations-error'));
      }

      function refresh(force) {
        return Promise.all([loadQueues(force), loadJobs(force), loadAllocations(force)]);
      }

      function cancel(job) {
        var what = 'job ' + txt(job.job_id) + ' (' + txt(job.name) + ', ' + txt(job.state) + ' in ' + txt(job.partition) + ')';
        if (!window.confirm('Cancel ' + what + '? The scheduler stops it and it cannot be resumed.')) return;
        u.replace(message, el('span', {class: 'muted'}, 'cancelling ' + what + '…'));
        ctx.withSession(function (sid) {
          return ctx.api('POST', 'cancel/' + u.seg(sid) + '/' + u.seg(String(job.job_id)), {}, {timeout: TIMEOUT_MS});
        }).then(function () {
          if (!ctx.active) return;
          u.replace(message, el('span', {class: 'badge ok', 'data-testid': 'qi-cancelled'}, 'cancelled ' + what));
          return untilGone(String(job.job_id), SETTLE_TRIES);
        }, function (err) {
          if (ctx.active) u.replace(message, el('div', {class: 'error-box', 'data-testid': 'qi-cancel-error'}, u.describeError(err)));
        });
      }

      var first = true;
      ctx.every(REFRESH_MS, function () {
        var run = first ? refresh(false) : Promise.all([loadQueues(false), loadJobs(false)]);
        first = false;
        return run;
      });
    }
  });
})();

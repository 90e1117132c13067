/* staging: a file browser over the staging plugin's routes (docs/explorer.md).
 *
 * Listing, mkdir, rename and remove are JSON calls through ctx.api. Uploads are one
 * streamed `PUT upload/<sid>?path=` per file, sent by XMLHttpRequest for its upload
 * progress events; downloads are same-origin links to `GET download/<sid>?path=` with
 * the `download` attribute, so the browser streams them to disk (the login cookie
 * authenticates GETs; the browser sends Origin with the PUT, as the bridge requires).
 * File names come from the endpoint and may be anything: they only ever reach the DOM
 * as text, through el().
 */
(function () {
  'use strict';
  var X = window.OrbitExplorer;
  if (!X) return;
  var u = X.util, el = X.el;

  /** the listing is re-read this often while the page is open (keeps the session alive too) */
  var REFRESH_MS = 15000;
  /** an upload whose body stops moving for this long is abandoned (what was sent is kept for a resume) */
  var UPLOAD_STALL_MS = 120000;
  /** a resumed upload's held part up to this size is checked against the file's start
   * (read whole to hash it: WebCrypto has no streaming digest); beyond, the user decides */
  var HELD_CHECK_MAX = 128 * 1024 * 1024;
  var TYPE_LABEL = {dir: 'folder', file: 'file', link: 'link', other: 'other'};
  var COLUMNS = [
    {key: 'name', label: 'Name'},
    {key: 'type', label: 'Type', cls: 'st-col-type'},
    {key: 'size', label: 'Size', num: true},
    {key: 'mtime', label: 'Modified', cls: 'st-col-mtime'}
  ];
  var STYLE =
    '.st-bar{display:flex;flex-wrap:wrap;gap:8px;align-items:center;margin-bottom:10px}' +
    '.st-bar .spacer{flex:1}' +
    '.st-bar .root{display:flex;align-items:center;gap:6px;flex:0 1 420px;min-width:0}' +
    '.st-bar select{font:inherit;padding:3px 6px;border:1px solid var(--line);border-radius:5px;' +
    'background:var(--panel);min-width:0;flex:1;text-overflow:ellipsis}' +
    '.st-bar .hid{display:inline-flex;align-items:center;gap:4px;white-space:nowrap}' +
    '.st-crumbs{display:flex;flex-wrap:wrap;align-items:center;gap:2px;font-family:var(--mono);font-size:13px;' +
    'margin-bottom:10px;word-break:break-all}' +
    '.st-crumbs button{border:0;background:none;padding:1px 4px;color:var(--accent);border-radius:4px;font:inherit}' +
    '.st-crumbs button:hover{background:var(--accent-soft)}' +
    '.st-crumbs .here{padding:1px 4px;font-weight:600}' +
    '.st-crumbs .sep{color:var(--muted)}' +
    '.st-drop{position:relative;min-height:140px}' +
    '.st-drop.over{outline:2px dashed var(--accent);outline-offset:-4px;background:var(--accent-soft)}' +
    '.st-drop .hint{color:var(--muted);font-size:12.5px;margin-top:8px}' +
    '.st-table{table-layout:auto}' +
    '.st-table th button{border:0;background:none;padding:0;color:inherit;font:inherit;white-space:nowrap}' +
    '.st-table th button:hover{color:var(--accent)}' +
    '.st-table tr:hover td{background:#f7f9fc}' +
    '.st-table td.st-name{max-width:0;width:55%}' +
    '.st-name .nm{display:inline-flex;align-items:baseline;gap:6px;max-width:100%;min-width:0}' +
    '.st-name .nm > span:last-child,.st-name a,.st-name button{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}' +
    '.st-name button.dir{border:0;background:none;padding:0;color:var(--accent);font:inherit;font-weight:600;text-align:left}' +
    '.st-name a{color:var(--text);text-decoration:none}' +
    '.st-name a:hover{color:var(--accent);text-decoration:underline}' +
    '.st-icon{flex:none;width:1.2em;text-align:center;color:var(--muted)}' +
    '.st-acts{white-space:nowrap;text-align:right}' +
    '.st-acts a,.st-acts button{font-size:12px;padding:1px 7px;margin-left:4px;display:inline-block}' +
    '.st-acts a{border:1px solid var(--line);border-radius:5px;color:var(--text);text-decoration:none}' +
    '.st-acts a:hover{border-color:var(--accent)}' +
    '.st-transfers{margin-bottom:10px}' +
    '.st-transfer{display:grid;grid-template-columns:minmax(0,1fr) auto;gap:3px 10px;align-items:center;' +
    'padding:6px 0;border-bottom:1px solid #f0f2f6}' +
    '.st-transfer:last-child{border-bottom:0}' +
    '.st-transfer .nm{font-family:var(--mono);font-size:12.5px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}' +
    '.st-transfer .info{grid-column:1/-1;color:var(--muted);font-size:12px;font-variant-numeric:tabular-nums}' +
    '.st-transfer.failed .info{color:var(--bad)}' +
    '.st-transfer.done .info{color:var(--ok)}' +
    '.st-progress{grid-column:1/-1;height:8px;background:#e9edf3;border-radius:4px;overflow:hidden}' +
    '.st-progress > span{display:block;height:100%;width:0;background:var(--bar);transition:width .2s}' +
    '.st-transfer.done .st-progress > span{background:var(--ok)}' +
    '.st-transfer.failed .st-progress > span{background:var(--bad)}' +
    '.st-table td.num,.st-table td.st-col-mtime{white-space:nowrap}' +
    '@media (max-width:640px){.st-col-type,.st-col-mtime{display:none}.st-table td.st-name{width:70%}' +
    '.st-bar .root{flex:1 1 100%}.st-bar .spacer{display:none}' +
    '.st-name .lbl{white-space:normal;overflow-wrap:anywhere}' +
    '.st-acts [data-action=download]{display:none}' +   // the name is the download link
    '.st-acts a,.st-acts button{margin:2px 0 2px 3px;padding:1px 5px}}';

  function obj(v) { return v && typeof v === 'object' && !Array.isArray(v) ? v : {}; }
  function num(v) { return typeof v === 'number' && isFinite(v); }
  /** A path as a query value. A name that is not UTF-8 on disk comes in JSON as lone
   * surrogates (Python's surrogateescape: byte 0xE9 is U+DCE9), which encodeURIComponent
   * refuses: each goes as the byte it stands for (%E9), which the endpoint decodes back
   * to the same name. null for anything else no URL can carry. */
  function qpath(path) {
    var out = '', i, c, d;
    for (i = 0; i < path.length; i++) {
      c = path.charCodeAt(i);
      d = i + 1 < path.length ? path.charCodeAt(i + 1) : 0;
      if (c >= 0xD800 && c <= 0xDBFF && d >= 0xDC00 && d <= 0xDFFF) {
        out += encodeURIComponent(path.substr(i, 2));
        i++;
      } else if (c >= 0xDC80 && c <= 0xDCFF) {
        out += '%' + (c - 0xDC00).toString(16).toUpperCase();
      } else if (c >= 0xD800 && c <= 0xDFFF) {
        return null;
      } else {
        out += encodeURIComponent(path.charAt(i));
      }
    }
    return out;
  }
  /** Whether a path can go into a URL (JSON calls carry any name). */
  function urlSafe(path) { return qpath(path) !== null; }
  var NOT_UTF8 = 'this name cannot be put in a URL, so the browser cannot ask for it ' +
                 '(rename it here, or fetch it with the SDK)';

  /** dir + '/' + name without doubling the slash of '/' */
  function join(dir, name) { return dir.replace(/\/+$/, '') + '/' + name; }
  function parentOf(path) {
    var i = path.replace(/\/+$/, '').lastIndexOf('/');
    return i <= 0 ? '/' : path.slice(0, i);
  }
  function baseName(path) {
    var parts = path.replace(/\/+$/, '').split('/');
    return parts[parts.length - 1] || path;
  }
  /** the root holding path (the longest that is a prefix of it), or null */
  function rootOf(roots, path) {
    var best = null;
    roots.forEach(function (r) {
      var pre = r.replace(/\/+$/, '');
      if ((path === r || path === pre || path.indexOf(pre + '/') === 0 || pre === '') &&
          (best === null || r.length > best.length)) best = r;
    });
    return best;
  }
  function fmtDate(t) {
    if (!num(t)) return '—';
    var d = new Date(t * 1000);
    function two(x) { return x < 10 ? '0' + x : String(x); }
    return d.getFullYear() + '-' + two(d.getMonth() + 1) + '-' + two(d.getDate()) + ' ' +
           two(d.getHours()) + ':' + two(d.getMinutes());
  }
  function hex(buffer) {
    return Array.prototype.map.call(new Uint8Array(buffer), function (b) {
      return (b < 16 ? '0' : '') + b.toString(16);
    }).join('');
  }
  /** a name typed by the user: one path component */
  function badName(name) {
    if (!name) return 'a name cannot be empty';
    if (name === '.' || name === '..') return 'a name cannot be "." or ".."';
    if (name.indexOf('/') >= 0 || name.indexOf('\0') >= 0) return 'a name cannot contain "/"';
    return null;
  }
  /** the error of an XHR answer, by the shell's rule (its own 401 shows the login view) */
  function xhrError(xhr) {
    return X.answerError(xhr.status, function (name) { return xhr.getResponseHeader(name); },
                         xhr.responseText || xhr.statusText, 'upload');
  }
  /** the user kept the existing file */
  var NOT_REPLACED = new Error('not replaced');
  function rate(bytes, ms) { return ms > 0 ? u.fmtBytes(bytes * 1000 / ms) + '/s' : ''; }

  X.registerPlugin('staging', {
    title: 'Files',
    render: function (container, ctx) {
      var storeKey = 'orbit.staging.' + ctx.endpoint + '/' + ctx.instance;
      var st = {roots: [], home: null, path: null, entries: [], sort: {key: 'name', dir: 1},
                hidden: false, truncated: false, seq: 0, loading: 0, shown: null, sid: null,
                queue: [], current: null};

      var errorBox = el('div', {class: 'error-box', role: 'alert', 'data-testid': 'staging-error', hidden: true});
      var rootSelect = el('select', {'aria-label': 'root', 'data-testid': 'staging-roots',
                                     onchange: function () { go(rootSelect.value); }});
      var picker = el('input', {type: 'file', multiple: true, hidden: true, 'data-testid': 'staging-picker',
                                onchange: function () {
                                  var files = Array.prototype.slice.call(picker.files || []);
                                  picker.value = '';
                                  enqueue(files);
                                }});
      var hiddenToggle = el('input', {type: 'checkbox', onchange: function () {
        st.hidden = hiddenToggle.checked;
        draw();
      }});
      var upButton = el('button', {type: 'button', title: 'parent folder', 'data-action': 'up',
                                   onclick: function () { if (st.path) go(parentOf(st.path)); }}, '↑ Up');
      var crumbs = el('nav', {class: 'st-crumbs', 'aria-label': 'path', 'data-testid': 'staging-crumbs'});
      var transfers = el('section', {class: 'card st-transfers', 'data-testid': 'staging-transfers', hidden: true},
                         el('h3', null, 'Uploads'));
      var listing = el('div', {'data-testid': 'staging-listing'}, el('div', {class: 'muted'}, 'Loading…'));
      var count = el('span', {class: 'muted'});
      var drop = el('section', {class: 'card st-drop', 'data-testid': 'staging-drop'},
                    listing,
                    el('div', {class: 'hint'}, 'Drop files here to upload them into this folder. ', count));

      u.replace(container,
        el('style', null, STYLE),
        el('div', {class: 'st-bar'},
          el('label', {class: 'muted root'}, 'Root', rootSelect),
          upButton,
          el('button', {type: 'button', 'data-action': 'refresh', onclick: function () { load(st.path, true); }}, 'Refresh'),
          el('span', {class: 'spacer'}),
          el('label', {class: 'muted hid'}, hiddenToggle, 'hidden files'),
          el('button', {type: 'button', 'data-action': 'mkdir', onclick: mkdir}, 'New folder'),
          el('button', {type: 'button', class: 'primary', 'data-action': 'upload',
                        onclick: function () { picker.click(); }}, 'Upload…'),
          picker),
        crumbs, errorBox, transfers, drop);

      // ------------------------------------------------------------ errors
      function showError(prefix, err) {
        if (!ctx.active) return;
        errorBox.textContent = prefix + ': ' + u.describeError(err);
        errorBox.hidden = false;
      }
      function clearError() { errorBox.hidden = true; }

      function call(route, body) {
        return ctx.withSession(function (sid) {
          st.sid = sid;
          return ctx.api('POST', route + '/' + u.seg(sid), body);
        });
      }

      // ------------------------------------------------------------ listing
      function go(path) { load(path, true); }

      /** The periodic re-read: skipped while a listing is on its way (it must not win over
       * a navigation the user started meanwhile). */
      function refresh() {
        return st.loading ? Promise.resolve() : load(st.path);
      }

      /** Read a directory; `nav` marks a navigation. The latest call wins; an error keeps
       * the listing shown before. */
      function load(path, nav) {
        if (!path) return Promise.resolve();
        var seq = ++st.seq;
        st.loading += 1;
        return call('list', {path: path}).then(function (answer) {
          st.loading -= 1;
          if (!ctx.active || seq !== st.seq) return;
          answer = obj(answer);
          var newPath = typeof answer.path === 'string' ? answer.path : path;
          var entries = Array.isArray(answer.entries) ? answer.entries.map(obj) : [];
          var same = newPath === st.path && JSON.stringify(entries) === st.shown &&
                     !!answer.truncated === st.truncated;
          st.path = newPath;
          st.entries = entries;
          st.truncated = !!answer.truncated;
          if (nav || !same) clearError();
          try { sessionStorage.setItem(storeKey, newPath); } catch (e) { /* storage off */ }
          if (!same) draw();
        }, function (err) {
          st.loading -= 1;
          if (!ctx.active || seq !== st.seq) return;
          showError('Cannot list ' + path, err);
          if (!st.path) u.replace(listing, el('div', {class: 'muted'}, 'Nothing to show.'));
        });
      }

      function sorted(entries) {
        var key = st.sort.key, dir = st.sort.dir;
        return entries.slice().sort(function (a, b) {
          var da = a.type === 'dir' ? 0 : 1, db = b.type === 'dir' ? 0 : 1;
          if (da !== db) return da - db;                 // folders first, in either direction
          var c = 0;
          if (key === 'size' || key === 'mtime') c = (num(a[key]) ? a[key] : -1) - (num(b[key]) ? b[key] : -1);
          else if (key === 'type') c = String(a.type).localeCompare(String(b.type));
          if (!c) c = String(a.name).localeCompare(String(b.name), undefined, {numeric: true, sensitivity: 'base'});
          if (!c) c = String(a.name) < String(b.name) ? -1 : (String(a.name) > String(b.name) ? 1 : 0);
          return c * dir;
        });
      }

      function draw() {
        if (!ctx.active) return;
        st.shown = JSON.stringify(st.entries);
        drawRoots();
        drawCrumbs();
        // a root's parent is outside every root
        upButton.disabled = !st.path || st.roots.indexOf(st.path) >= 0 || st.path === '/';
        var shown = st.entries.filter(function (e) { return st.hidden || String(e.name).charAt(0) !== '.'; });
        var hiddenCount = st.entries.length - shown.length;
        count.textContent = shown.length + (shown.length === 1 ? ' item' : ' items') +
                            (hiddenCount ? ' (' + hiddenCount + ' hidden)' : '') +
                            (st.truncated ? '; the folder holds more than the endpoint lists (the first ' +
                                            st.entries.length + ' by name)' : '');
        if (!shown.length) {
          u.replace(listing, el('div', {class: 'muted', 'data-testid': 'staging-empty'},
                                'This folder is empty.'));
          return;
        }
        u.replace(listing, el('table', {class: 'grid st-table'},
          el('thead', null, el('tr', null, COLUMNS.map(header), el('th', {scope: 'col'}, el('span', {class: 'muted'}, '')))),
          el('tbody', null, sorted(shown).map(row))));
      }

      function header(c) {
        var active = st.sort.key === c.key;
        var arrow = active ? (st.sort.dir > 0 ? ' ▲' : ' ▼') : '';
        return el('th', {class: (c.num ? 'num ' : '') + (c.cls || ''), scope: 'col',
                         'aria-sort': active ? (st.sort.dir > 0 ? 'ascending' : 'descending') : 'none'},
          el('button', {type: 'button', 'data-sort': c.key, onclick: function () {
            st.sort = {key: c.key, dir: active ? -st.sort.dir : (c.key === 'name' || c.key === 'type' ? 1 : -1)};
            draw();
          }}, c.label + arrow));
      }

      function row(e) {
        var name = String(e.name), path = join(st.path, name), isDir = e.type === 'dir';
        var icon = el('span', {class: 'st-icon', 'aria-hidden': 'true'},
                      isDir ? '▸' : (e.type === 'link' ? '↪' : '·'));
        var label;
        if (isDir) {
          label = el('button', {type: 'button', class: 'dir lbl', title: name, onclick: function () { go(path); }}, name);
        } else if (e.type === 'link') {
          label = el('button', {type: 'button', class: 'dir lbl', title: name + ' (link)', onclick: function () { follow(path); }}, name);
        } else {
          label = downloadLink(path, name, name, {class: 'lbl', title: 'download ' + name});
        }
        return el('tr', {'data-name': name, 'data-type': String(e.type),
                         ondblclick: isDir ? function () { go(path); } : null},
          el('td', {class: 'st-name'}, el('span', {class: 'nm'}, icon, label)),
          el('td', {class: 'st-col-type muted'}, TYPE_LABEL[e.type] || String(e.type)),
          el('td', {class: 'num', title: num(e.size) ? e.size + ' bytes' : null, 'data-testid': 'size'},
             isDir ? '—' : u.fmtBytes(e.size)),
          el('td', {class: 'st-col-mtime muted', title: num(e.mtime) ? new Date(e.mtime * 1000).toString() : null},
             fmtDate(e.mtime)),
          el('td', {class: 'st-acts'},
            e.type === 'file' ? downloadLink(path, name, 'Download', {'data-action': 'download'}) : null,
            el('button', {type: 'button', 'data-action': 'rename', onclick: function () { rename(path, name); }}, 'Rename'),
            el('button', {type: 'button', class: 'danger', 'data-action': 'delete',
                          onclick: function () { remove(path, name, isDir); }}, 'Delete')));
      }

      function drawRoots() {
        var root = rootOf(st.roots, st.path || '');
        u.replace(rootSelect, st.roots.map(function (r) {
          return el('option', {value: r, selected: r === root}, r === st.home ? r + ' (home)' : r);
        }), root === null ? el('option', {value: '', selected: true, disabled: true}, '—') : null);
      }

      /** root (one crumb, as the endpoint names it) then each folder below it */
      function drawCrumbs() {
        var path = st.path || '';
        var root = rootOf(st.roots, path);
        var start = root === null ? '/' : root;
        var rest = path.slice(start.replace(/\/+$/, '').length).split('/').filter(Boolean);
        var parts = [{label: start, path: start}];
        var acc = start;
        rest.forEach(function (p) { acc = join(acc, p); parts.push({label: p, path: acc}); });
        u.replace(crumbs, parts.map(function (p, i) {
          var last = i === parts.length - 1;
          return [i ? el('span', {class: 'sep'}, '/') : null,
                  last ? el('span', {class: 'here', 'aria-current': 'page'}, p.label)
                       : el('button', {type: 'button', onclick: function () { go(p.path); }}, p.label)];
        }));
      }

      // ------------------------------------------------------------ download
      function downloadUrl(sid, path) {
        return '/' + u.seg(ctx.endpoint) + '/' + u.seg(ctx.instance) + '/download/' + u.seg(sid) +
               '?path=' + qpath(path) + '&attachment=1';
      }

      /** A real same-origin link (copyable, streamed to disk by the browser). On a click
       * the file is checked first with stat, on a live session, so a gone file or an
       * expired session shows an error here instead of a failed download. */
      function downloadLink(path, name, text, attrs) {
        if (!urlSafe(path)) {
          return el('span', Object.assign({}, attrs || {}, {class: ((attrs || {})['class'] || '') + ' muted',
                                                            title: NOT_UTF8}), text);
        }
        var a = el('a', Object.assign({href: st.sid ? downloadUrl(st.sid, path) : '#',
                                       download: name}, attrs || {}), text);
        a.addEventListener('click', function (ev) {
          if (ev.button !== 0 || ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.altKey) return;
          ev.preventDefault();
          ctx.withSession(function (sid) {
            return ctx.api('POST', 'stat/' + u.seg(sid), {path: path}).then(function (s) {
              // downloads share the endpoint's transfer slots with uploads: a refused one
              // would only be a failed download in the browser's list
              return ctx.api('GET', 'upload_status/' + u.seg(sid) + '?path=' + qpath(path)).then(function (f) {
                return {sid: sid, stat: obj(s), free: obj(f).free};
              });
            });
          }).then(function (got) {
            if (!ctx.active) return;
            if (got.stat.type === 'dir') { go(path); return; }
            if (got.free === 0) {
              showError('Cannot download ' + name, new Error(ctx.endpoint + ' runs as many transfers as it ' +
                                                             'allows; try again in a few seconds'));
              return;
            }
            st.sid = got.sid;
            var go2 = el('a', {href: downloadUrl(got.sid, path), download: name, hidden: true});
            document.body.appendChild(go2);
            go2.click();
            document.body.removeChild(go2);
          }, function (err) { showError('Cannot download ' + name, err); });
        });
        return a;
      }

      /** a link: a folder to open or a file to fetch, by what it points at */
      function follow(path) {
        call('stat', {path: path}).then(function (s) {
          s = obj(s);
          if (s.type === 'dir') go(path);
          else if (ctx.active) {
            var a = downloadLink(path, baseName(path), '', {hidden: true});
            document.body.appendChild(a);
            a.click();
            document.body.removeChild(a);
          }
        }, function (err) { showError('Cannot open ' + baseName(path), err); });
      }

      // ------------------------------------------------------------ mkdir, rename, delete
      function mkdir() {
        if (!st.path) return;
        var name = window.prompt('New folder in ' + st.path + ':', '');
        if (name === null) return;
        name = name.trim();
        var bad = badName(name);
        if (bad) { showError('Cannot create the folder', new Error(bad)); return; }
        call('mkdir', {path: join(st.path, name)}).then(function () { return load(st.path); },
          function (err) { showError('Cannot create folder ' + name, err); });
      }

      function rename(path, name) {
        var to = window.prompt('Rename "' + name + '" to:', name);
        if (to === null) return;
        to = to.trim();
        if (to === name) return;
        var bad = badName(to);
        if (bad) { showError('Cannot rename ' + name, new Error(bad)); return; }
        var dst = join(parentOf(path), to);
        function attempt(overwrite) {
          return call('rename', {src: path, dst: dst, overwrite: overwrite}).then(function () {
            return load(st.path);
          }, function (err) {
            if (err && err.status === 409 && !overwrite &&
                window.confirm('"' + to + '" already exists. Replace it with "' + name + '"?')) {
              return attempt(true);
            }
            showError('Cannot rename ' + name, err);
          });
        }
        attempt(false);
      }

      function remove(path, name, isDir) {
        var question = isDir ? 'Delete the folder "' + name + '" and everything in it?'
                             : 'Delete "' + name + '"?';
        if (!window.confirm(question + '\n\n' + path + '\n\nThis cannot be undone.')) return;
        call('remove', {path: path, recursive: isDir}).then(function () { return load(st.path); },
          function (err) { showError('Cannot delete ' + name, err); });
      }

      // ------------------------------------------------------------ upload
      function enqueue(files) {
        if (!st.path || !files.length) return;
        var dir = st.path;
        files.forEach(function (file) { st.queue.push(transferRow(file, dir)); });
        pump();
      }

      function transferRow(file, dir) {
        var t = {file: file, dir: dir, path: join(dir, file.name), xhr: null, cancelled: false};
        t.fill = el('span');
        t.info = el('div', {class: 'info'}, 'waiting · ' + u.fmtBytes(file.size));
        t.cancel = el('button', {type: 'button', class: 'link', 'data-action': 'cancel', onclick: function () {
          t.cancelled = true;
          if (t.xhr) t.xhr.abort();
          else finish(t, 'failed', 'cancelled');
        }}, 'cancel');
        t.node = el('div', {class: 'st-transfer', 'data-name': file.name},
          el('span', {class: 'nm', title: t.path}, file.name), t.cancel,
          el('div', {class: 'st-progress', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100}, t.fill),
          t.info);
        transfers.hidden = false;
        transfers.appendChild(t.node);
        return t;
      }

      function progress(t, done, total, startedAt) {
        var p = total > 0 ? Math.min(100, 100 * done / total) : 100;
        t.fill.style.width = p.toFixed(1) + '%';
        t.node.querySelector('.st-progress').setAttribute('aria-valuenow', String(Math.round(p)));
        t.info.textContent = u.fmtBytes(done) + ' of ' + u.fmtBytes(total) + ' · ' + Math.floor(p) + ' %' +
                             (startedAt ? ' · ' + rate(done, Date.now() - startedAt) : '');
      }

      function finish(t, kind, text) {
        t.node.classList.add(kind);
        t.info.textContent = text;
        t.cancel.hidden = true;
        if (kind === 'done') {
          t.fill.style.width = '100%';
          // finished rows fade out of the panel after a while; failures stay until dismissed
          setTimeout(function () {
            if (t.node.parentNode) t.node.parentNode.removeChild(t.node);
            if (transfers.querySelectorAll('.st-transfer').length === 0) transfers.hidden = true;
          }, 8000);
        } else {
          t.cancel.hidden = false;
          t.cancel.textContent = 'dismiss';
          t.cancel.onclick = null;
          t.cancel.addEventListener('click', function () {
            if (t.node.parentNode) t.node.parentNode.removeChild(t.node);
            if (transfers.querySelectorAll('.st-transfer').length === 0) transfers.hidden = true;
          });
        }
      }

      /** one upload at a time, in the order given */
      function pump() {
        if (st.current || !ctx.active) return;
        var t = st.queue.shift();
        if (!t) return;
        st.current = t;
        (t.cancelled ? Promise.resolve() : upload(t)).then(null, function () {}).then(function () {
          st.current = null;
          if (ctx.active && t.dir === st.path) load(st.path);
          pump();
        });
      }

      /** Ask before replacing a file, offer to resume a partial upload, then stream it. */
      function upload(t) {
        var file = t.file;
        t.info.textContent = 'checking…';
        var checked = urlSafe(t.path) ? call('stat', {path: t.path})
          : Promise.reject(new X.ApiError(400, 'cannot upload into ' + t.dir + ': ' + NOT_UTF8, 'upload'));
        return checked.then(function (s) {
          s = obj(s);
          if (s.type === 'dir') throw new X.ApiError(409, '"' + file.name + '" is a folder here', 'stat');
          if (!window.confirm('"' + file.name + '" already exists in ' + t.dir + ' (' + u.fmtBytes(s.size) +
                              '). Replace it?')) {
            throw NOT_REPLACED;
          }
          return true;
        }, function (err) {
          if (err && err.status === 404) return false;
          throw err;
        }).then(function (overwrite) {
          return uploadStatus(t).then(function (s) {
            if (t.cancelled) throw new X.ApiError(0, 'cancelled', 'upload');
            var held = num(obj(s).offset) ? obj(s).offset : 0;
            var checkable = held <= HELD_CHECK_MAX && window.crypto && window.crypto.subtle;
            var resume = held > 0 && held <= file.size &&
              window.confirm(u.fmtBytes(held) + ' of "' + file.name + '" are already on the endpoint from an ' +
                             'earlier upload. Continue from there?\n\n(Cancel starts again from the beginning.' +
                             (checkable ? ')' : ' That part cannot be checked against this file here: continue ' +
                                                'only if it is the same file.)'));
            if (!resume) return send(t, overwrite, 0, true);
            if (!checkable) return send(t, overwrite, held, true);
            t.info.textContent = 'checking the ' + u.fmtBytes(held) + ' held…';
            return file.slice(0, held).arrayBuffer().then(function (buf) {
              return window.crypto.subtle.digest('SHA-256', buf);
            }).then(function (digest) {
              return send(t, overwrite, held, true, hex(digest));
            });
          }, function () {
            return send(t, overwrite, 0, true);
          });
        }).then(function (answer) {
          var a = obj(answer);
          finish(t, 'done', 'uploaded ' + u.fmtBytes(num(a.size) ? a.size : file.size) +
                 (t.rate ? ' · ' + t.rate : '') + (a.sha256 ? ' · sha256 ' + String(a.sha256).slice(0, 12) + '…' : ''));
        }, function (err) {
          if (!ctx.active) return;
          if (t.cancelled) { finish(t, 'failed', 'cancelled (what was sent is kept for a resume)'); return; }
          if (err === NOT_REPLACED) { finish(t, 'failed', 'not replaced'); return; }
          finish(t, 'failed', u.describeError(err));
          showError('Upload of ' + file.name + ' failed', err);
        });
      }

      /** upload_status, asked again every retry_after s while the endpoint has no transfer
       * slot free: a refusal would reach the browser, still sending, as a cut connection. */
      function uploadStatus(t) {
        return ctx.withSession(function (sid) {
          return ctx.api('GET', 'upload_status/' + u.seg(sid) + '?path=' + qpath(t.path));
        }).then(function (s) {
          s = obj(s);
          if (s.free !== 0 || t.cancelled || !ctx.active) return s;
          var wait = num(s.retry_after) && s.retry_after > 0 ? s.retry_after : 5;
          t.info.textContent = 'waiting: ' + ctx.endpoint + ' runs as many transfers as it allows';
          return new Promise(function (resolve) { setTimeout(resolve, wait * 1000); }).then(function () {
            return uploadStatus(t);
          });
        });
      }

      /** The PUT itself: XHR, for its upload progress events. 409 (someone made the file
       * meanwhile) asks once; a 404/410 on the session registers a new one once. */
      function send(t, overwrite, offset, retrySession, heldSha256) {
        return ctx.session().then(function (sid) {
          return new Promise(function (resolve, reject) {
            var file = t.file, body = offset ? file.slice(offset) : file;
            var xhr = new XMLHttpRequest();
            var started = Date.now(), lastMove = Date.now();
            var stall = setInterval(function () {
              if (Date.now() - lastMove > UPLOAD_STALL_MS) xhr.abort();
            }, 5000);
            t.xhr = xhr;
            var url = '/' + u.seg(ctx.endpoint) + '/' + u.seg(ctx.instance) + '/upload/' + u.seg(sid) +
                      '?path=' + qpath(t.path) + '&overwrite=' + (overwrite ? 'true' : 'false') +
                      (offset ? '&offset=' + offset : '') + (offset && heldSha256 ? '&held_sha256=' + heldSha256 : '');
            xhr.open('PUT', url);
            xhr.setRequestHeader('Content-Type', 'application/octet-stream');
            xhr.setRequestHeader('Accept', 'application/json');
            // once the body is sent, the endpoint may take a while to commit a big file
            xhr.upload.addEventListener('load', function () { clearInterval(stall); });
            xhr.upload.addEventListener('progress', function (ev) {
              lastMove = Date.now();
              progress(t, offset + ev.loaded, file.size, started);
              t.rate = rate(ev.loaded, Date.now() - started);
            });
            xhr.addEventListener('loadend', function () {
              clearInterval(stall);
              t.xhr = null;
              if (xhr.status >= 200 && xhr.status < 300) {
                var answer = null;
                try { answer = JSON.parse(xhr.responseText); } catch (e) { /* keep null */ }
                resolve(answer);
              } else if (xhr.status === 0) {
                reject(new X.ApiError(0, t.cancelled ? 'cancelled'
                  : 'the upload was interrupted (what arrived is kept: upload it again to resume)', 'upload'));
              } else {
                var err = xhrError(xhr);
                err.resumeMismatch = xhr.getResponseHeader('X-Orbit-Resume') === 'mismatch';
                reject(err);
              }
            });
            progress(t, offset, file.size, 0);
            xhr.send(body);
          });
        }).then(null, function (err) {
          if (!ctx.active || t.cancelled) throw err;
          if (err.resumeMismatch && offset) {
            // the held part was not this file's start: the endpoint removed it; start over
            return send(t, overwrite, 0, retrySession);
          }
          if (err.status === 409 && !overwrite && /exist/i.test(err.detail || '') &&
              window.confirm('"' + t.file.name + '" now exists in ' + t.dir + '. Replace it?')) {
            return send(t, true, 0, retrySession);
          }
          if ((err.status === 410 || err.status === 404) && retrySession && /session/i.test(err.detail || '')) {
            return ctx.session({renew: true}).then(function () { return send(t, overwrite, offset, false); });
          }
          throw err;
        });
      }

      // ------------------------------------------------------------ drag and drop
      var depth = 0;
      function hasFiles(ev) {
        var types = ev.dataTransfer && ev.dataTransfer.types;
        return !!types && Array.prototype.indexOf.call(types, 'Files') >= 0;
      }
      drop.addEventListener('dragenter', function (ev) {
        if (!hasFiles(ev)) return;
        ev.preventDefault();
        depth += 1;
        drop.classList.add('over');
      });
      drop.addEventListener('dragover', function (ev) {
        if (!hasFiles(ev)) return;
        ev.preventDefault();
        ev.dataTransfer.dropEffect = 'copy';
      });
      drop.addEventListener('dragleave', function () {
        depth = Math.max(0, depth - 1);
        if (!depth) drop.classList.remove('over');
      });
      drop.addEventListener('drop', function (ev) {
        if (!hasFiles(ev)) return;
        ev.preventDefault();
        depth = 0;
        drop.classList.remove('over');
        var dt = ev.dataTransfer, files = [], folders = [];
        var items = dt.items ? Array.prototype.slice.call(dt.items) : [];
        if (items.length) {
          items.forEach(function (item) {
            if (item.kind !== 'file') return;
            var entry = item.webkitGetAsEntry ? item.webkitGetAsEntry() : null;
            var f = item.getAsFile();
            if (entry && entry.isDirectory) folders.push(entry.name);
            else if (f) files.push(f);
          });
        } else {
          files = Array.prototype.slice.call(dt.files || []);
        }
        if (folders.length) {
          showError('Not uploaded', new Error('folders cannot be dropped (' + folders.join(', ') +
                                              '); drop the files, or create the folder first'));
        }
        enqueue(files);
      });
      // a file dropped next to the listing must not replace the Explorer with the file
      function swallow(ev) { if (hasFiles(ev)) ev.preventDefault(); }
      container.addEventListener('dragover', swallow);
      container.addEventListener('drop', swallow);

      // leaving the page stops the uploads (what was sent is kept on the endpoint for a resume)
      ctx.onCleanup(function () {
        st.queue.splice(0).forEach(function (t) { t.cancelled = true; });
        var t = st.current;
        if (t) {
          t.cancelled = true;
          if (t.xhr) t.xhr.abort();
        }
      });

      // ------------------------------------------------------------ start
      return ctx.withSession(function (sid) {
        st.sid = sid;
        return ctx.api('GET', 'roots/' + u.seg(sid));
      }).then(function (r) {
        r = obj(r);
        st.roots = Array.isArray(r.roots) ? r.roots.filter(function (x) { return typeof x === 'string'; }) : [];
        st.home = typeof r.home === 'string' ? r.home : null;
        var saved = null;
        try { saved = sessionStorage.getItem(storeKey); } catch (e) { /* storage off */ }
        var first = saved && rootOf(st.roots, saved) !== null ? saved
          : (st.home && rootOf(st.roots, st.home) !== null ? st.home : st.roots[0]);
        if (!first) {
          u.replace(listing, el('div', {class: 'muted'}, 'This endpoint allows no folders.'));
          return;
        }
        var fallback = st.home && rootOf(st.roots, st.home) !== null ? st.home : st.roots[0];
        return load(first, true).then(function () {
          // a remembered folder that is gone: start at home instead
          if (!st.path && first !== fallback) return load(fallback, true);
        }).then(function () {
          var skip = true;   // every() runs at once: the listing was just read
          if (ctx.active) ctx.every(REFRESH_MS, function () { return skip ? (skip = false) : refresh(); });
        });
      }, function (err) {
        showError('Cannot read the allowed folders', err);
        u.replace(listing, el('div', {class: 'muted'}, 'Nothing to show.'));
      });
    }
  });
})();

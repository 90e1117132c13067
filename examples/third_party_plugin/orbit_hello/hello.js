/* hello: the Explorer page of the orbit_hello example. The bridge serves this file from
 * the installed package (the descriptor's ui_package). Text only: nothing from the
 * endpoint is inserted as HTML. */
(function () {
  'use strict';
  var X = window.OrbitExplorer;
  if (!X) return;
  var el = X.el, u = X.util;

  X.registerPlugin('hello', {
    title: 'Hello',
    render: function (container, ctx) {
      var name = el('input', {type: 'text', value: 'Explorer', 'aria-label': 'name'});
      var answer = el('p', {class: 'muted'}, 'no greeting yet');
      var shouts = el('ul');
      function greet() {
        return ctx.withSession(function (sid) {
          return ctx.api('GET', 'greet/' + u.seg(sid) + '?name=' + encodeURIComponent(name.value));
        }).then(function (data) {
          u.replace(answer, data.greeting + ' (greeting ' + data.count + ' of this page)');
        }, function (err) { if (ctx.active) u.replace(answer, u.describeError(err)); });
      }
      var button = el('button', {type: 'button', onclick: greet}, 'Greet');
      ctx.onNotification(function (n) {
        if (n.topic === 'shouted') shouts.appendChild(el('li', null, u.toText(n.data && n.data.text)));
      });
      u.replace(container, el('section', {class: 'card wide'}, el('h3', null, 'Hello'),
        el('div', {class: 'toolbar'}, name, button), answer,
        el('h3', null, 'Shouts heard'), shouts));
    }
  });
})();

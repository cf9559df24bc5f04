(function () {
  var cells = {}, nodes = {};
  document.querySelectorAll('#grid a[data-node]').forEach(function (c) { cells[c.dataset.node] = c; });
  document.querySelectorAll('details.node').forEach(function (d) { nodes[d.dataset.node] = d; });
  function openNode(id) {
    var d = document.getElementById(id);
    if (d) { d.open = true; d.scrollIntoView(); }
  }
  document.getElementById('grid').addEventListener('click', function (e) {
    var a = e.target.closest('a[data-node]');
    if (!a) return;
    e.preventDefault();
    var id = a.getAttribute('href').slice(1);
    history.replaceState(null, '', '#' + id);
    openNode(id);
  });
  if (location.hash.length > 1) openNode(location.hash.slice(1));
  var live = document.body.dataset.live;
  if (!live || !window.EventSource) return;
  // Counts per status, kept as nodes change (not recounted over the grid:
  // a 1,000-node run sends thousands of events, each would walk it).
  var counts = {}, countEls = {};
  Object.keys(cells).forEach(function (k) { var s = cells[k].className.slice(2); counts[s] = (counts[s] || 0) + 1; });
  document.querySelectorAll('#counts [data-status]').forEach(function (e) { countEls[e.dataset.status] = e; });
  function showCount(st) {
    var e = countEls[st];
    if (e) e.textContent = (counts[st] || 0) + ' ' + st;
  }
  function setStatus(name, st) {
    var c = cells[name], d = nodes[name];
    if (c) {
      var was = c.className.slice(2);
      if (was !== st) {
        counts[was] = (counts[was] || 1) - 1; showCount(was);
        counts[st] = (counts[st] || 0) + 1; showCount(st);
      }
      c.className = 's-' + st; c.title = name + ': ' + st;
    }
    if (d) { d.querySelector('.dot').className = 'dot s-' + st; d.querySelector('.st').textContent = st; }
  }
  function cell(tr, text) { var td = document.createElement('td'); td.textContent = text; tr.appendChild(td); return td; }
  function addStep(s) {
    var d = nodes[s.node];
    if (!d) return;
    var t = d.querySelector('table.steps');
    var tr = document.createElement('tr');
    cell(tr, (s.on_failure ? 'on_failure: ' : '') + s.step);
    cell(tr, '').appendChild(Object.assign(document.createElement('span'), { className: 'badge s-' + s.status, textContent: s.status }));
    cell(tr, s.attempt > 1 ? 'attempt ' + s.attempt : '');
    cell(tr, s.exit === null || s.exit === undefined ? '' : 'exit ' + s.exit);
    cell(tr, (s.duration_ms / 1000).toFixed(1) + 's');
    var out = cell(tr, s.error || '');
    [['stdout', ''], ['stderr', 'err']].forEach(function (p) {
      if (s[p[0]]) { var pre = document.createElement('pre'); pre.className = p[1]; pre.textContent = s[p[0]]; out.appendChild(pre); }
    });
    t.appendChild(tr);
  }
  // The run is over: the page says so in place (the server may be gone).
  function finished(sum) {
    es.close();
    document.body.dataset.live = '';
    var words = { 0: 'ok', 1: 'failed', 3: 'stopped', 4: 'error', 5: 'drift', 6: 'unreachable' };
    var word = words[sum.exit_code] || 'error';
    var badge = document.getElementById('badge');
    badge.textContent = word;
    badge.className = 'badge s-' + ({ ok: 'ok', failed: 'failed', drift: 'changed', unreachable: 'unreachable' }[word] || 'not_run');
    document.getElementById('result').textContent = word + ' (exit ' + sum.exit_code + ')' + (sum.stopped ? ', stopped: ' + sum.stopped : '');
    document.getElementById('duration').textContent = ((sum.duration_ms || 0) / 1000).toFixed(1) + 's';
  }
  var es = new EventSource(live + '?after=' + document.body.dataset.seq);
  es.addEventListener('reload', function () { es.close(); location.reload(); });
  es.onmessage = function (m) {
    var ev = JSON.parse(m.data);
    switch (ev.event) {
      case 'node_started': setStatus(ev.node, 'running'); break;
      case 'step_finished': addStep(ev); break;
      case 'node_finished':
        setStatus(ev.node, ev.status);
        if (ev.error && nodes[ev.node]) nodes[ev.node].querySelector('.nerr').textContent = ev.error;
        break;
      case 'run_finished': finished(ev.summary || {}); break;
    }
  };
})();

// The results of a run and their three renderings: Markdown tables (one per scenario: a row
// per metric, a column per server, and the ratio), JSON, and a hand-written SVG chart of
// SMTP msg/s against the number of connections.

export interface Metric {
  label: string;
  /** which way is better: the ratio column is always "> 1: the first server is better" */
  better: 'higher' | 'lower' | 'none';
  /** one value per server, null where it does not apply or was not measured */
  values: (number | null)[];
  digits: number;
}

export interface Scenario {
  id: string;
  protocol: 'smtp' | 'pop3' | 'memory';
  title: string;
  /** how the load was made (the smtp-source command line, the POP3 commands) */
  load: string;
  servers: string[];
  metrics: Metric[];
  /** SMTP runs that belong on the chart: their connection count */
  connections?: number;
  notes: string[];
}

export interface Report {
  started: string;
  finished: string;
  command: string;
  machine: { cpus: number; cpuModel: string; memoryGiB: number; kernel: string; node: string };
  quick: boolean;
  scenarios: Scenario[];
}

/** ">1: the first server is better": rates are divided first by second, times second by first. */
export function ratio(metric: Metric): number | null {
  const [a, b] = metric.values;
  if (metric.better === 'none' || a == null || b == null || a === 0 || b === 0) return null;
  return metric.better === 'higher' ? a / b : b / a;
}

function format(value: number | null, digits: number): string {
  if (value === null || Number.isNaN(value)) return '–';
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export function scenarioTable(s: Scenario): string {
  const compared = s.servers.length >= 2;
  const head = ['', ...s.servers, ...(compared ? [`${s.servers[0]} vs ${s.servers[1]}`] : [])];
  const lines = [
    `#### ${s.title}`,
    '',
    `load: ${s.load}`,
    '',
    `| ${head.join(' | ')} |`,
    `|${head.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`,
  ];
  for (const m of s.metrics) {
    if (m.values.every((v) => v === null)) continue;
    const r = compared ? ratio(m) : null;
    const cells = [
      m.label,
      ...m.values.map((v) => format(v, m.digits)),
      ...(compared ? [r === null ? '' : `${r.toFixed(2)}×`] : []),
    ];
    lines.push(`| ${cells.join(' | ')} |`);
  }
  for (const note of s.notes) lines.push('', note);
  return lines.join('\n');
}

export function markdown(report: Report): string {
  const m = report.machine;
  return [
    `Run ${report.started} → ${report.finished}${report.quick ? ' (--quick)' : ''}: ` +
      `${m.cpus} × ${m.cpuModel}, ${m.memoryGiB} GiB, Linux ${m.kernel}, Node ${m.node}`,
    `Command: \`${report.command}\``,
    'Ratio column: > 1× means the first server is better (rates: first ÷ second; times and memory: second ÷ first).',
    '',
    ...report.scenarios.map((s) => `${scenarioTable(s)}\n`),
  ].join('\n');
}

// ------------------------------------------------------------------ SVG

const esc = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** A tick step of 1, 2 or 5 × 10^n giving about five ticks up to `max`. */
function tickStep(max: number): number {
  const raw = max / 5;
  const power = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((k) => k * power).find((step) => step >= raw)!;
}

/**
 * msg/s (end to end) against connections, one line per server, from the SMTP scenarios that
 * carry a connection count. Connection counts are spaced evenly (1, 10, 50, 200 are not linear).
 */
export function svgChart(report: Report, metricLabel: string): string {
  const runs = report.scenarios.filter((s) => s.connections !== undefined);
  const counts = [...new Set(runs.map((s) => s.connections!))].sort((a, b) => a - b);
  const servers = [...new Set(runs.flatMap((s) => s.servers))];
  const value = (server: string, connections: number): number | null => {
    const s = runs.find((r) => r.connections === connections && r.servers.includes(server));
    const m = s?.metrics.find((x) => x.label === metricLabel);
    return m?.values[s!.servers.indexOf(server)] ?? null;
  };
  const all = servers.flatMap((srv) => counts.map((c) => value(srv, c))).filter((v): v is number => v !== null);
  const W = 720;
  const H = 420;
  const left = 70;
  const right = 160;
  const top = 50;
  const bottom = 60;
  const plotW = W - left - right;
  const plotH = H - top - bottom;
  const step = tickStep(Math.max(1, ...all) * 1.1);
  const yMax = Math.ceil((Math.max(1, ...all) * 1.1) / step) * step;
  const x = (i: number) => left + (counts.length === 1 ? plotW / 2 : (i * plotW) / (counts.length - 1));
  const y = (v: number) => top + plotH - (v / yMax) * plotH;
  const colors = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd'];
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" ` +
      'font-family="sans-serif" font-size="12">',
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="${left}" y="24" font-size="15" font-weight="bold">` +
      `${esc(`SMTP ${metricLabel} against connections`)}</text>`,
    `<text x="${left}" y="40" fill="#555">` +
      `${esc(`${report.started.slice(0, 10)}, ${report.machine.cpus} CPUs; one message per connection`)}</text>`,
  ];
  for (let v = 0; v <= yMax; v += step) {
    out.push(`<line x1="${left}" x2="${left + plotW}" y1="${y(v)}" y2="${y(v)}" stroke="#ddd"/>`);
    out.push(`<text x="${left - 8}" y="${y(v) + 4}" text-anchor="end">${v}</text>`);
  }
  counts.forEach((c, i) => {
    out.push(`<text x="${x(i)}" y="${top + plotH + 20}" text-anchor="middle">${c}</text>`);
  });
  out.push(`<text x="${left + plotW / 2}" y="${H - 15}" text-anchor="middle">concurrent connections</text>`);
  out.push(`<text transform="translate(18 ${top + plotH / 2}) rotate(-90)" text-anchor="middle">msg/s</text>`);
  out.push(`<line x1="${left}" x2="${left}" y1="${top}" y2="${top + plotH}" stroke="#333"/>`);
  out.push(`<line x1="${left}" x2="${left + plotW}" y1="${top + plotH}" y2="${top + plotH}" stroke="#333"/>`);
  servers.forEach((server, k) => {
    const color = colors[k % colors.length]!;
    const points = counts
      .map((c, i) => [i, value(server, c)] as const)
      .filter((p): p is readonly [number, number] => p[1] !== null);
    if (points.length > 1)
      out.push(
        `<polyline fill="none" stroke="${color}" stroke-width="2" ` +
          `points="${points.map(([i, v]) => `${x(i)},${y(v)}`).join(' ')}"/>`,
      );
    for (const [i, v] of points) {
      out.push(`<circle cx="${x(i)}" cy="${y(v)}" r="4" fill="${color}"/>`);
      out.push(`<text x="${x(i)}" y="${y(v) - 9}" text-anchor="middle" fill="${color}">${Math.round(v)}</text>`);
    }
    const ly = top + 10 + k * 20;
    out.push(
      `<line x1="${left + plotW + 20}" x2="${left + plotW + 44}" y1="${ly}" y2="${ly}" ` +
        `stroke="${color}" stroke-width="3"/>`,
    );
    out.push(`<text x="${left + plotW + 50}" y="${ly + 4}">${esc(server)}</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

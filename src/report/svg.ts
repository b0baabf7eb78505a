// `mailsrv report --svg`: the per-hour traffic of a ReportSummary as a bar chart, a standalone
// SVG written by hand: for each hour a bar of messages received and one of recipients delivered,
// a y axis with round ticks, hour labels, a legend; each bar's tooltip gives its numbers.
import { hourName, type ReportSummary } from './aggregate.js';

const PLOT_HEIGHT = 240;
const LEFT = 64;
const RIGHT = 24;
const TOP = 56;
const BOTTOM = 80;
/** Width the bars of all hours share, unless each would be narrower than MIN_SLOT. */
const PLOT_WIDTH = 960;
const MIN_SLOT = 6;
const MAX_SLOT = 48;
const MAX_LABELS = 24;
const COLORS = { received: '#4e79a7', delivered: '#59a14f' };

export function trafficSvg(summary: ReportSummary): string {
  const { hours } = summary;
  const slot = Math.min(MAX_SLOT, Math.max(MIN_SLOT, Math.floor(PLOT_WIDTH / Math.max(1, hours.length))));
  const plotWidth = slot * Math.max(1, hours.length);
  const width = LEFT + plotWidth + RIGHT;
  const height = TOP + PLOT_HEIGHT + BOTTOM;
  const top = niceCeiling(Math.max(0, ...hours.map((h) => Math.max(h.received, h.delivered))));
  const y = (value: number) => TOP + PLOT_HEIGHT - (value / top) * PLOT_HEIGHT;
  const out: string[] = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
      `viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="${LEFT}" y="20" font-size="14" font-weight="bold">${escapeXml(title(summary))}</text>`,
  ];
  // legend
  for (const [index, name] of (['received', 'delivered'] as const).entries()) {
    const x = LEFT + index * 130;
    out.push(
      `<rect x="${x}" y="32" width="10" height="10" fill="${COLORS[name]}"/>`,
      `<text x="${x + 14}" y="41">${name === 'received' ? 'messages received' : 'recipients delivered'}</text>`,
    );
  }
  // y axis: grid lines and round ticks
  const step = top / 5;
  for (let tick = 0; tick <= top; tick += step) {
    const ty = round(y(tick));
    out.push(
      `<line x1="${LEFT}" y1="${ty}" x2="${LEFT + plotWidth}" y2="${ty}" stroke="#dddddd"/>`,
      `<text x="${LEFT - 6}" y="${round(ty + 4)}" text-anchor="end">${tick}</text>`,
    );
  }
  // bars
  const barWidth = Math.max(1, (slot - 2) / 2);
  for (const [index, hour] of hours.entries()) {
    const x0 = LEFT + index * slot + 1;
    const when = `${hourName(hour.hour)} UTC`;
    for (const [side, name] of (['received', 'delivered'] as const).entries()) {
      const value = hour[name];
      if (value === 0) continue;
      out.push(
        `<rect x="${round(x0 + side * barWidth)}" y="${round(y(value))}" width="${round(barWidth)}" ` +
          `height="${round(TOP + PLOT_HEIGHT - y(value))}" fill="${COLORS[name]}">` +
          `<title>${escapeXml(`${when}: ${value} ${name}`)}</title></rect>`,
      );
    }
  }
  // x labels: every labelEvery-th hour, turned to fit
  const labelEvery = Math.max(1, Math.ceil(hours.length / MAX_LABELS));
  for (let index = 0; index < hours.length; index += labelEvery) {
    const hour = hours[index]!.hour;
    const x = round(LEFT + index * slot + slot / 2);
    const ly = TOP + PLOT_HEIGHT + 14;
    out.push(
      `<line x1="${x}" y1="${TOP + PLOT_HEIGHT}" x2="${x}" y2="${TOP + PLOT_HEIGHT + 4}" stroke="#333333"/>`,
      `<text x="${x}" y="${ly}" text-anchor="end" transform="rotate(-45 ${x} ${ly})">` +
        `${escapeXml(`${hour.slice(5, 10)} ${hour.slice(11, 13)}h`)}</text>`,
    );
  }
  if (hours.length === 0) {
    out.push(`<text x="${LEFT + plotWidth / 2}" y="${TOP + PLOT_HEIGHT / 2}" text-anchor="middle">no traffic</text>`);
  }
  // axes last, over the bars
  out.push(
    `<line x1="${LEFT}" y1="${TOP}" x2="${LEFT}" y2="${TOP + PLOT_HEIGHT}" stroke="#333333"/>`,
    `<line x1="${LEFT}" y1="${TOP + PLOT_HEIGHT}" x2="${LEFT + plotWidth}" y2="${TOP + PLOT_HEIGHT}" ` +
      'stroke="#333333"/>',
    '</svg>',
  );
  return `${out.join('\n')}\n`;
}

function title(summary: ReportSummary): string {
  const { hours } = summary;
  if (hours.length === 0) return 'mailsrv: mail per hour (UTC)';
  return `mailsrv: mail per hour (UTC), ${hourName(hours[0]!.hour)} to ${hourName(hours[hours.length - 1]!.hour)}`;
}

/** The top of the y axis: the smallest of 5, 10, 25, 50, 100, 250, ... at least `value` (five whole ticks). */
export function niceCeiling(value: number): number {
  for (let power = 1; ; power *= 10) {
    for (const factor of [1, 2, 5]) if (factor * power * 5 >= value) return factor * power * 5;
  }
}

function round(value: number): number {
  return Math.round(value * 10) / 10;
}

function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

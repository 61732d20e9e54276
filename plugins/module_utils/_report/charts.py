# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Inline SVG charts: geometry as plain functions, markup with every value escaped.

Private to the collection: not a public API, may change without notice.

No script and no style attribute (the report's Content-Security-Policy allows neither): colours
are SVG presentation attributes. Each mark carries its number in ``data-value`` (and its label in
``data-label``) beside the drawn length, so a reader -- or a test in a browser -- can check one
against the other.
"""

from __future__ import annotations

import math
from html import escape

SEVERITY_COLOURS = {"critical": "#7f1d1d", "high": "#dc2626", "medium": "#d97706", "low": "#2563eb", "info": "#6b7280"}
BAR_COLOUR = "#4f46e5"
WIDTH = 760
LABEL_WIDTH = 290
VALUE_WIDTH = 60
ROW_HEIGHT = 22
MAX_LABEL = 40


def e(value):
    """Text or attribute value, escaped (quotes too)."""
    return escape("" if value is None else str(value), quote=True)


def nice_ceiling(value):
    """The smallest 1, 2 or 5 times a power of ten that is >= value (1 for 0 or less)."""
    if value <= 1:
        return 1
    power = 10 ** int(math.floor(math.log10(value)))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power


def scaled(value, maximum, length):
    """The drawn length of ``value`` on an axis where ``maximum`` spans ``length`` (2 decimals)."""
    if maximum <= 0 or value <= 0:
        return 0.0
    return round(float(value) * length / float(maximum), 2)


def ticks(maximum, count=4):
    """Evenly spaced axis values from 0 to ``maximum``; whole numbers only (counts have no halves)."""
    if float(maximum).is_integer():
        count = next((n for n in (count, 5, 4, 2) if n <= maximum and int(maximum) % n == 0), 1)
    step = maximum / float(count)
    return [int(step * i) if float(step * i).is_integer() else round(step * i, 2) for i in range(count + 1)]


def short(label, limit=MAX_LABEL):
    """A long label (an ARN) cut in the middle; the full text stays in the mark's <title>."""
    label = "" if label is None else str(label)
    if len(label) <= limit:
        return label
    head = (limit - 1) // 2
    return label[:head] + "\u2026" + label[-(limit - 1 - head):]


def _svg(chart_id, title, width, height, body):
    return ('<svg xmlns="http://www.w3.org/2000/svg" class="chart-svg" id="%s" role="img" aria-labelledby="%s-title" '
            'width="%d" height="%d" viewBox="0 0 %d %d"><title id="%s-title">%s</title>%s</svg>'
            % (e(chart_id), e(chart_id), width, height, width, height, e(chart_id), e(title), "".join(body)))


def _empty(chart_id, title, message="No data for this period."):
    return _svg(chart_id, title, WIDTH, 40, ['<text class="empty" x="0" y="24">%s</text>' % e(message)])


def hbar_chart(chart_id, title, rows, colour=BAR_COLOUR):
    """Horizontal bars, one per (label, value); the longest bar spans a "nice" maximum."""
    rows = [(label, int(value)) for label, value in rows]
    if not rows:
        return _empty(chart_id, title)
    maximum = nice_ceiling(max(value for _label, value in rows))
    area = WIDTH - LABEL_WIDTH - VALUE_WIDTH
    body = []
    for index, (label, value) in enumerate(rows):
        y = index * ROW_HEIGHT
        length = scaled(value, maximum, area)
        body.append(
            '<g class="bar" data-label="%s" data-value="%d"><title>%s: %d</title>'
            '<text class="label" x="%d" y="%d" text-anchor="end">%s</text>'
            '<rect x="%d" y="%d" width="%s" height="%d" fill="%s"></rect>'
            '<text class="value" x="%s" y="%d">%d</text></g>'
            % (e(label), value, e(label), value, LABEL_WIDTH - 6, y + 15, e(short(label)),
               LABEL_WIDTH, y + 3, length, ROW_HEIGHT - 6, e(colour), LABEL_WIDTH + length + 4, y + 15, value))
    height = len(rows) * ROW_HEIGHT + 22
    body.append(_x_axis(maximum, area, len(rows) * ROW_HEIGHT))
    return _svg(chart_id, title, WIDTH, height, body)


def _x_axis(maximum, area, y):
    parts = ['<g class="axis" data-max="%d"><line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#9ca3af"></line>'
             % (maximum, LABEL_WIDTH, y + 2, LABEL_WIDTH + area, y + 2)]
    for tick in ticks(maximum):
        x = LABEL_WIDTH + scaled(tick, maximum, area)
        parts.append('<text class="tick" x="%s" y="%d" text-anchor="middle">%s</text>' % (x, y + 16, e(tick)))
    parts.append("</g>")
    return "".join(parts)


def stacked_hbar_chart(chart_id, title, rows, series, colours=None):
    """Horizontal stacked bars: rows of (label, {series: value}, {attribute: value}).

    Each segment is a <rect data-series= data-value=>; the row's total in ``data-total``.
    """
    colours = colours or SEVERITY_COLOURS
    rows = list(rows)
    if not rows:
        return _empty(chart_id, title, "Nothing audited.")
    totals = [sum(int(values.get(name, 0)) for name in series) for _label, values, _attrs in rows]
    maximum = nice_ceiling(max(totals))
    area = WIDTH - LABEL_WIDTH - VALUE_WIDTH
    body = [_legend(series, colours, 0)]
    top = 22
    for index, (label, values, attrs) in enumerate(rows):
        y = top + index * ROW_HEIGHT
        extra = "".join(' data-%s="%s"' % (e(key), e(value)) for key, value in sorted((attrs or {}).items()))
        body.append('<g class="stack" data-label="%s" data-total="%d"%s><title>%s: %d</title>'
                    '<text class="label" x="%d" y="%d" text-anchor="end">%s</text>'
                    % (e(label), totals[index], extra, e(label), totals[index], LABEL_WIDTH - 6, y + 15, e(short(label))))
        x = float(LABEL_WIDTH)
        for name in series:
            value = int(values.get(name, 0))
            length = scaled(value, maximum, area)
            body.append('<rect class="segment" data-series="%s" data-value="%d" x="%s" y="%d" width="%s" height="%d" fill="%s">'
                        '<title>%s: %d</title></rect>'
                        % (e(name), value, round(x, 2), y + 3, length, ROW_HEIGHT - 6, e(colours.get(name, BAR_COLOUR)),
                           e(name), value))
            x += length
        body.append('<text class="value" x="%s" y="%d">%d</text></g>' % (round(x + 4, 2), y + 15, totals[index]))
    body.append(_x_axis(maximum, area, top + len(rows) * ROW_HEIGHT))
    return _svg(chart_id, title, WIDTH, top + len(rows) * ROW_HEIGHT + 22, body)


def _legend(series, colours, y):
    parts = ['<g class="legend">']
    for index, name in enumerate(series):
        x = LABEL_WIDTH + index * 95
        parts.append('<rect x="%d" y="%d" width="12" height="12" fill="%s"></rect><text x="%d" y="%d">%s</text>'
                     % (x, y + 3, e(colours.get(name, BAR_COLOUR)), x + 16, y + 13, e(name)))
    parts.append("</g>")
    return "".join(parts)


def column_chart(chart_id, title, points, colour=BAR_COLOUR, height=180):
    """Vertical columns, one per (label, value) in the given order (days)."""
    points = [(label, int(value)) for label, value in points]
    if not points:
        return _empty(chart_id, title)
    maximum = nice_ceiling(max(value for _label, value in points))
    left, bottom = 50, 40
    plot = height - bottom - 10
    slot = (WIDTH - left) / float(len(points))
    body = ['<g class="axis" data-max="%d"><line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#9ca3af"></line>'
            % (maximum, left, 10 + plot, WIDTH, 10 + plot)]
    for tick in ticks(maximum):
        y = 10 + plot - scaled(tick, maximum, plot)
        body.append('<text class="tick" x="%d" y="%s" text-anchor="end">%s</text>' % (left - 4, round(y + 4, 2), e(tick)))
    body.append("</g>")
    every = max(1, int(math.ceil(len(points) / 15.0)))
    for index, (label, value) in enumerate(points):
        length = scaled(value, maximum, plot)
        x = left + index * slot
        body.append('<g class="bar" data-label="%s" data-value="%d"><title>%s: %d</title>'
                    '<rect x="%s" y="%s" width="%s" height="%s" fill="%s"></rect>'
                    % (e(label), value, e(label), value, round(x + slot * 0.15, 2), round(10 + plot - length, 2),
                       round(slot * 0.7, 2), length, e(colour)))
        if index % every == 0:
            body.append('<text class="label" x="%s" y="%d" text-anchor="middle">%s</text>'
                        % (round(x + slot / 2, 2), height - bottom + 24, e(str(label)[5:] if len(str(label)) == 10 else label)))
        body.append("</g>")
    return _svg(chart_id, title, WIDTH, height, body)


def stacked_column_chart(chart_id, title, columns, series, colours=None, height=220):
    """Vertical stacked columns: (label, {series: value}) in order (runs, oldest first).

    Each segment is a <rect data-run= data-series= data-value=>; each column's total in ``data-total``.
    """
    colours = colours or SEVERITY_COLOURS
    columns = list(columns)
    if not columns:
        return _empty(chart_id, title, "No runs yet.")
    totals = [sum(int(values.get(name, 0)) for name in series) for _label, values in columns]
    maximum = nice_ceiling(max(totals))
    left, bottom, top = 50, 40, 26
    plot = height - bottom - top
    slot = (WIDTH - left) / float(max(len(columns), 6))
    body = [_legend(series, colours, 0),
            '<g class="axis" data-max="%d"><line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#9ca3af"></line>'
            % (maximum, left, top + plot, WIDTH, top + plot)]
    for tick in ticks(maximum):
        y = top + plot - scaled(tick, maximum, plot)
        body.append('<text class="tick" x="%d" y="%s" text-anchor="end">%s</text>' % (left - 4, round(y + 4, 2), e(tick)))
    body.append("</g>")
    every = max(1, int(math.ceil(len(columns) / 6.0)))
    for index, (label, values) in enumerate(columns):
        x = left + index * slot
        body.append('<g class="column" data-run="%s" data-total="%d"><title>%s: %d</title>'
                    % (e(label), totals[index], e(label), totals[index]))
        y = float(top + plot)
        for name in series:
            value = int(values.get(name, 0))
            length = scaled(value, maximum, plot)
            y -= length
            body.append('<rect class="segment" data-run="%s" data-series="%s" data-value="%d" x="%s" y="%s" width="%s" '
                        'height="%s" fill="%s"><title>%s %s: %d</title></rect>'
                        % (e(label), e(name), value, round(x + slot * 0.15, 2), round(y, 2), round(slot * 0.7, 2), length,
                           e(colours.get(name, BAR_COLOUR)), e(label), e(name), value))
        body.append('<text class="value" x="%s" y="%s" text-anchor="middle">%d</text>'
                    % (round(x + slot / 2, 2), round(y - 4, 2), totals[index]))
        if index % every == 0 or index == len(columns) - 1:
            body.append('<text class="label" x="%s" y="%d" text-anchor="middle">%s</text>'
                        % (round(x + slot / 2, 2), height - bottom + 20, e(str(label)[:16])))
        body.append("</g>")
    return _svg(chart_id, title, WIDTH, height, body)

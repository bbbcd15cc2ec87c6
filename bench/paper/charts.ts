/**
 * SVG charts for docs/bench/paper.md, rendered server-side by vega-lite → vega (`view.toSVG()`, no
 * browser, no canvas, no network). One chart per metric: Send-Index and Build-Index side by side
 * across growth factors (SD80) and across KV mixes (GF 8).
 */
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';

export interface ChartPoint {
  /** 'growth factor' or 'KV mix'. */
  axis: string;
  x: string;
  mode: 'send-index' | 'build-index';
  value: number;
}

export async function barChartSvg(title: string, unit: string, points: ChartPoint[]): Promise<string> {
  const axes = [...new Set(points.map((p) => p.axis))];
  const spec: TopLevelSpec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: title, fontSize: 13 },
    data: { values: points },
    hconcat: axes.map((axis) => ({
      title: { text: `across ${axis}`, fontSize: 11, fontWeight: 'normal' },
      width: 220,
      height: 160,
      transform: [{ filter: { field: 'axis', equal: axis } }],
      mark: { type: 'bar', tooltip: false },
      encoding: {
        x: { field: 'x', type: 'ordinal', title: axis, sort: null, axis: { labelAngle: 0 } },
        xOffset: { field: 'mode', sort: ['send-index', 'build-index'] },
        y: { field: 'value', type: 'quantitative', title: unit },
        color: {
          field: 'mode',
          type: 'nominal',
          title: 'mode',
          sort: ['send-index', 'build-index'],
          scale: { range: ['#4c78a8', '#f58518'] },
        },
      },
    })),
    config: { font: 'sans-serif', background: 'white' },
  };
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  const svg = await view.toSVG();
  view.finalize();
  return svg;
}

// train/svg_plot.h: a minimal line-plot writer producing a standalone SVG image.
//
// It exists so that a command can hand a person a plot they can open in any browser or image
// viewer (`simba highway` draws |Δy_T(t)| against distance with it) without a plotting
// library. One panel: a frame, grid lines and tick labels on both axes (linear or log10),
// a title, axis labels, and the series as polylines (solid or dashed) with a dot at each
// point, listed in a legend to the right of the panel.
//
// Axes. The range of each axis covers every plotted point. Linear axes get "nice" ticks
// (1, 2 or 5 × 10^k apart, about six of them) and are widened to whole ticks; log axes get
// a tick at every power of ten, plus 2× and 5× ticks when the data spans fewer than three
// decades, and are widened to whole decades.
// Points. A point with a non-finite coordinate, or a coordinate <= 0 on a log axis, cannot
// be placed: it is skipped and the series' line is broken there (a gap, not a jump across it).
// Text (title, labels, legend) is XML-escaped, so any string is safe to pass.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace simba {

struct PlotSeries {
  std::string label;          // legend entry
  std::vector<double> x, y;   // same length; drawn in the given order
  std::string color = "#1f77b4";  // any SVG colour ("#rrggbb", "red", ...)
  bool dashed = false;
};

struct PlotOptions {
  std::string title, x_label, y_label;
  bool log_x = false, log_y = false;
  int width = 800, height = 500;  // pixels of the whole image, >= 320 × 240
};

// The i-th of ten distinct colours, cycling: one per series where a plot has several.
const char* plot_color(size_t i);

// The SVG document. Errors: a series whose x and y differ in length, a colour holding
// characters outside [#0-9A-Za-z], an image smaller than 320 × 240, no plottable point at all.
std::string line_plot_svg(const std::vector<PlotSeries>& series, const PlotOptions& options);

}  // namespace simba

// train/svg_plot.cpp: the SVG line plot of train/svg_plot.h.
#include "train/svg_plot.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <sstream>

#include "tensor/error.h"

namespace simba {

namespace {

// Panel margins in pixels: room for tick labels (left, bottom), the title (top) and the legend (right).
constexpr double kLeft = 72, kRight = 190, kTop = 36, kBottom = 52;

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

std::string tick_label(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", std::fabs(v) < 1e-12 ? 0.0 : v);
  return buf;
}

// One axis: the data range it shows (in log10 units for a log axis) and its tick values.
struct Axis {
  bool log = false;
  double lo = 0, hi = 1;       // shown range, transformed (log10 for a log axis)
  std::vector<double> ticks;   // tick values, untransformed
  double transform(double v) const { return log ? std::log10(v) : v; }
};

bool plottable(double v, bool log) { return std::isfinite(v) && (!log || v > 0); }

Axis make_axis(double lo, double hi, bool log) {
  Axis a;
  a.log = log;
  if (log) {
    double l0 = std::floor(std::log10(lo)), l1 = std::ceil(std::log10(hi));
    if (l1 <= l0) l1 = l0 + 1;
    a.lo = l0;
    a.hi = l1;
    const bool fine = l1 - l0 < 3;
    for (double e = l0; e <= l1; e += 1) {
      const double p = std::pow(10.0, e);
      a.ticks.push_back(p);
      if (fine && e < l1) {
        a.ticks.push_back(2 * p);
        a.ticks.push_back(5 * p);
      }
    }
    return a;
  }
  if (hi <= lo) {  // one value: show a unit around it
    lo -= 0.5;
    hi += 0.5;
  }
  const double raw = (hi - lo) / 6;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double r = raw / mag;
  const double step = (r <= 1 ? 1 : r <= 2 ? 2 : r <= 5 ? 5 : 10) * mag;
  a.lo = std::floor(lo / step) * step;
  a.hi = std::ceil(hi / step) * step;
  const int64_t n = std::llround((a.hi - a.lo) / step);
  for (int64_t i = 0; i <= n; ++i) a.ticks.push_back(a.lo + static_cast<double>(i) * step);
  return a;
}

}  // namespace

const char* plot_color(size_t i) {
  static const char* const kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e",
                                        "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
  return kColors[i % 10];
}

std::string line_plot_svg(const std::vector<PlotSeries>& series, const PlotOptions& opt) {
  SIMBA_CHECK(opt.width >= 320 && opt.height >= 240,
              "line_plot_svg: image size " << opt.width << " x " << opt.height << " is below the minimum 320 x 240");
  double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
  for (const PlotSeries& s : series) {
    SIMBA_CHECK(s.x.size() == s.y.size(), "line_plot_svg: series '" << s.label << "' has " << s.x.size()
                                                                     << " x values but " << s.y.size() << " y values");
    SIMBA_CHECK(!s.color.empty() && std::all_of(s.color.begin(), s.color.end(),
                                                [](char c) { return c == '#' || std::isalnum(static_cast<unsigned char>(c)); }),
                "line_plot_svg: series '" << s.label << "' has colour '" << s.color
                                          << "', expected '#rrggbb' or a colour name");
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!plottable(s.x[i], opt.log_x) || !plottable(s.y[i], opt.log_y)) continue;
      xmin = std::min(xmin, s.x[i]);
      xmax = std::max(xmax, s.x[i]);
      ymin = std::min(ymin, s.y[i]);
      ymax = std::max(ymax, s.y[i]);
    }
  }
  SIMBA_CHECK(xmin <= xmax, "line_plot_svg: no plottable point in " << series.size() << " series (finite, and > 0 on a "
                                                                    << "log axis)");
  const Axis ax = make_axis(xmin, xmax, opt.log_x), ay = make_axis(ymin, ymax, opt.log_y);
  const double W = opt.width, H = opt.height;
  const double x0 = kLeft, x1 = W - kRight, y0 = H - kBottom, y1 = kTop;  // panel corners (y grows downwards)
  auto px = [&](double v) { return x0 + (ax.transform(v) - ax.lo) / (ax.hi - ax.lo) * (x1 - x0); };
  auto py = [&](double v) { return y0 - (ay.transform(v) - ay.lo) / (ay.hi - ay.lo) * (y0 - y1); };

  std::ostringstream o;
  o << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << opt.width << "\" height=\"" << opt.height
    << "\" viewBox=\"0 0 " << opt.width << " " << opt.height << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
    << "<rect x=\"0\" y=\"0\" width=\"" << opt.width << "\" height=\"" << opt.height << "\" fill=\"white\"/>\n"
    << "<text x=\"" << num(W / 2) << "\" y=\"" << num(kTop - 14) << "\" text-anchor=\"middle\" font-size=\"14\">"
    << escape(opt.title) << "</text>\n";
  // Grid and tick labels.
  o << "<g stroke=\"#dddddd\" stroke-width=\"1\">\n";
  for (double t : ax.ticks)
    o << "<line x1=\"" << num(px(t)) << "\" y1=\"" << num(y0) << "\" x2=\"" << num(px(t)) << "\" y2=\"" << num(y1)
      << "\"/>\n";
  for (double t : ay.ticks)
    o << "<line x1=\"" << num(x0) << "\" y1=\"" << num(py(t)) << "\" x2=\"" << num(x1) << "\" y2=\"" << num(py(t))
      << "\"/>\n";
  o << "</g>\n<g fill=\"black\">\n";
  for (double t : ax.ticks)
    o << "<text x=\"" << num(px(t)) << "\" y=\"" << num(y0 + 16) << "\" text-anchor=\"middle\">" << tick_label(t)
      << "</text>\n";
  for (double t : ay.ticks)
    o << "<text x=\"" << num(x0 - 6) << "\" y=\"" << num(py(t) + 4) << "\" text-anchor=\"end\">" << tick_label(t)
      << "</text>\n";
  o << "<text x=\"" << num((x0 + x1) / 2) << "\" y=\"" << num(H - 12) << "\" text-anchor=\"middle\">"
    << escape(opt.x_label) << "</text>\n"
    << "<text x=\"16\" y=\"" << num((y0 + y1) / 2) << "\" text-anchor=\"middle\" transform=\"rotate(-90 16 "
    << num((y0 + y1) / 2) << ")\">" << escape(opt.y_label) << "</text>\n</g>\n"
    << "<rect x=\"" << num(x0) << "\" y=\"" << num(y1) << "\" width=\"" << num(x1 - x0) << "\" height=\""
    << num(y0 - y1) << "\" fill=\"none\" stroke=\"black\"/>\n";
  // Series: one path each (a skipped point starts a new sub-path), then its dots.
  for (const PlotSeries& s : series) {
    const std::string dash = s.dashed ? " stroke-dasharray=\"7 4\"" : "";
    std::string d, dots;
    bool pen_down = false;
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!plottable(s.x[i], opt.log_x) || !plottable(s.y[i], opt.log_y)) {
        pen_down = false;
        continue;
      }
      const std::string X = num(px(s.x[i])), Y = num(py(s.y[i]));
      d += (pen_down ? " L " : (d.empty() ? "M " : " M ")) + X + " " + Y;
      pen_down = true;
      dots += "<circle cx=\"" + X + "\" cy=\"" + Y + "\" r=\"2.5\"/>";
    }
    if (d.empty()) continue;
    o << "<path d=\"" << d << "\" fill=\"none\" stroke=\"" << s.color << "\" stroke-width=\"1.8\"" << dash << "/>\n"
      << "<g fill=\"" << s.color << "\">" << dots << "</g>\n";
  }
  // Legend, right of the panel.
  o << "<g font-size=\"11\">\n";
  for (size_t i = 0; i < series.size(); ++i) {
    const PlotSeries& s = series[i];
    const double y = y1 + 8 + 18 * static_cast<double>(i);
    o << "<line x1=\"" << num(x1 + 12) << "\" y1=\"" << num(y) << "\" x2=\"" << num(x1 + 42) << "\" y2=\"" << num(y)
      << "\" stroke=\"" << s.color << "\" stroke-width=\"1.8\"" << (s.dashed ? " stroke-dasharray=\"7 4\"" : "")
      << "/>\n<text x=\"" << num(x1 + 48) << "\" y=\"" << num(y + 4) << "\">" << escape(s.label) << "</text>\n";
  }
  o << "</g>\n</svg>\n";
  return o.str();
}

}  // namespace simba

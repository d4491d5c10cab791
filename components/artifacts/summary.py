"""Summary: one split's summary.json as a typed value, read and written here only.

`build_summary` assembles it from merged slice statistics and error quantiles;
every reader (checks, plots, reports, notebooks, TensorBoard) goes through
`Summary.load`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from tfx_explain.artifacts import layout
from tfx_explain.artifacts.statistics import SliceStatistics, finite_dict, ranking

SKIPS_NOTE = ('Rows with NaN or infinite float inputs are skipped and counted here rather than '
              'failing the run; gate on this count with ExplanationValidator.')
ERROR_KINDS = ('absolute', 'relative')


def _fields(cls, data: Mapping[str, Any]) -> Dict[str, Any]:
  """The keys of `data` that are fields of `cls` (newer files may carry more)."""
  names = {f.name for f in dataclasses.fields(cls)}
  return {k: v for k, v in data.items() if k in names}


@dataclasses.dataclass
class Quantiles:
  """Quantiles over examples (completeness errors, steps spent)."""
  p50: float
  p95: float
  max: float

  @classmethod
  def of(cls, quantiles: Sequence[float]) -> 'Quantiles':
    """From 101 quantiles (0th..100th percentile)."""
    return cls(p50=float(quantiles[50]), p95=float(quantiles[95]), max=float(quantiles[100]))


class _WithQuantiles:
  """Read from JSON with the quantile fields (errors, steps) as Quantiles."""

  @classmethod
  def from_dict(cls, data: Mapping[str, Any]):
    fields = _fields(cls, data)
    for name in [f'{kind}_completeness_error' for kind in ERROR_KINDS] + ['steps']:
      if name in fields:
        quantiles = data.get(name)
        fields[name] = None if quantiles is None else Quantiles(**quantiles)
    return cls(**fields)


@dataclasses.dataclass
class MethodOnSlice(_WithQuantiles):
  """One method's statistics on one slice."""
  mean_absolute_attribution: Dict[str, float]
  mean_attribution: Dict[str, float]
  ranking: List[str]
  mean_completeness_error: float
  mean_relative_completeness_error: float
  mean_prediction: float
  # Vector features: mean (absolute) per-example total of their elements.
  feature_groups: Dict[str, Dict[str, float]] = dataclasses.field(default_factory=dict)
  absolute_completeness_error: Optional[Quantiles] = None
  relative_completeness_error: Optional[Quantiles] = None
  # Sampling estimators: mean per-example standard error per feature, which bounds
  # the standard error of mean_attribution.
  mean_standard_error: Dict[str, float] = dataclasses.field(default_factory=dict)
  # Methods that choose their model evaluations per example: the mean spent.
  mean_steps: Optional[float] = None


@dataclasses.dataclass
class SliceSummary:
  slice: str
  slice_key: List[List[Any]]
  examples: int
  methods: Dict[str, MethodOnSlice]

  @classmethod
  def from_dict(cls, data):
    return cls(data['slice'], [list(kv) for kv in data['slice_key']], int(data['examples']),
               {m: MethodOnSlice.from_dict(v) for m, v in data['methods'].items()})


@dataclasses.dataclass
class MethodInfo(_WithQuantiles):
  """What a method was and did over the whole split."""
  config: Dict[str, Any]
  skipped_features: List[str]
  value_kind: str
  absolute_completeness_error: Optional[Quantiles] = None
  relative_completeness_error: Optional[Quantiles] = None
  # Model evaluations spent per example (integration points, coalitions), over the split.
  steps: Optional[Quantiles] = None


@dataclasses.dataclass
class ImageInfo:
  shape: List[int]
  regions: List[str]
  maps: str = layout.MAPS_DIR
  mean_maps: str = layout.MEAN_MAPS_FILE


@dataclasses.dataclass
class Summary:
  """Global importances, completeness, counts and speed of one split."""
  split: str
  examples: int
  skipped_non_finite_rows: int
  features: List[str]
  output_kind: str
  target: Any
  methods: Dict[str, MethodInfo]
  slices: List[SliceSummary]                  # Overall first, then by slice depth and name
  reference_split: str = ''
  # The data files the split was read from, in the order example_index counts them.
  example_files: List[str] = dataclasses.field(default_factory=list)
  feature_groups: Dict[str, List[str]] = dataclasses.field(default_factory=dict)
  # Engine time inside the workers; examples_per_second is examples / compute_seconds.
  compute_seconds: Optional[float] = None
  examples_per_second: Optional[float] = None
  image: Optional[ImageInfo] = None
  note_on_skips: str = SKIPS_NOTE
  # Text models: the split's per-word summaries (tables.load_token_summary), or ''.
  token_summary: str = ''

  # -- reading ------------------------------------------------------------------
  @property
  def method_names(self) -> List[str]:
    return list(self.methods)

  @property
  def slice_names(self) -> List[str]:
    return [s.slice for s in self.slices]

  @property
  def overall(self) -> SliceSummary:
    return self.slice('Overall')

  def slice(self, name: str = 'Overall') -> SliceSummary:
    for entry in self.slices:
      if entry.slice == name:
        return entry
    raise KeyError(f'No slice {name!r} in the {self.split!r} summary; slices: {self.slice_names}.')

  def method_on(self, method: str, slice_name: str = 'Overall') -> MethodOnSlice:
    entry = self.slice(slice_name)
    if method not in entry.methods:
      raise KeyError(f'Method {method!r} not in slice {slice_name!r}; '
                     f'methods: {sorted(entry.methods)}.')
    return entry.methods[method]

  def importance(self, method: str, slice_name: str = 'Overall') -> Dict[str, float]:
    """Mean |attribution| per attributed feature (skipped features absent)."""
    return dict(self.method_on(method, slice_name).mean_absolute_attribution)

  def importance_frame(self, slice_name: str = 'Overall'):
    """Mean |attribution| per feature (rows) and method (columns) for one slice."""
    import pandas as pd  # pylint: disable=g-import-not-at-top
    entry = self.slice(slice_name)
    data = {m: v.mean_absolute_attribution for m, v in entry.methods.items()}
    return pd.DataFrame(data).reindex(self.features)

  # -- I/O ----------------------------------------------------------------------
  def to_dict(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, data: Mapping[str, Any]) -> 'Summary':
    fields = _fields(cls, data)
    fields['methods'] = {m: MethodInfo.from_dict(v) for m, v in data['methods'].items()}
    fields['slices'] = [SliceSummary.from_dict(s) for s in data['slices']]
    image = data.get('image')
    fields['image'] = ImageInfo(**_fields(ImageInfo, image)) if image else None
    return cls(**fields)

  @classmethod
  def load(cls, artifact_or_uri, split: str = 'eval') -> 'Summary':
    path = os.path.join(layout.existing_split_dir(artifact_or_uri, split), layout.SUMMARY_FILE)
    return cls.from_dict(layout.read_json(path))

  def write(self, split_directory: str) -> str:
    path = os.path.join(split_directory, layout.SUMMARY_FILE)
    layout.write_json(path, self.to_dict())
    return path


def load_summary(artifact_or_uri, split: str = 'eval') -> Summary:
  """The summary of one split of an Attributions artifact (or its URI)."""
  return Summary.load(artifact_or_uri, split)


# -- building -------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class SummaryPlan:
  """What the summary says about the run that is not in the statistics. Picklable."""
  split: str
  features: Tuple[str, ...]
  output_kind: str
  target: Any
  methods: Tuple[str, ...]                          # labels, in config order
  method_configs: Tuple[Dict[str, Any], ...]
  skipped_features: Tuple[Tuple[str, ...], ...]     # per method
  value_kinds: Tuple[str, ...]                      # per method
  reference_split: str = ''
  feature_groups: Tuple[Tuple[str, Tuple[str, ...]], ...] = ()   # vector -> its elements
  image_shape: Tuple[int, ...] = ()
  standard_errors: bool = False       # a method reports standard errors
  tokens: bool = False                # a token method: per-example words and their scores


SliceKey = Tuple[Tuple[str, Any], ...]
QuantileKey = Tuple[str, str, str]    # (method, slice name, 'absolute' | 'relative' | 'steps')


def _error_fields(quantiles: Mapping[QuantileKey, Sequence[float]], method: str,
                  slice_label: str) -> Dict[str, Quantiles]:
  return {f'{kind}_completeness_error': Quantiles.of(quantiles[(method, slice_label, kind)])
          for kind in ERROR_KINDS if (method, slice_label, kind) in quantiles}


def method_on_slice(stats: SliceStatistics, features: Sequence[str],
                    groups: Sequence[str] = ()) -> MethodOnSlice:
  mean_abs = stats.mean_abs()
  result = MethodOnSlice(
      mean_absolute_attribution=finite_dict(features, mean_abs),
      mean_attribution=finite_dict(features, stats.mean()),
      ranking=ranking(features, mean_abs),
      mean_completeness_error=stats.per_example(stats.error_sum),
      mean_relative_completeness_error=stats.per_example(stats.relative_error_sum),
      mean_prediction=stats.per_example(stats.prediction_sum))
  standard_error = stats.mean_standard_error()
  if standard_error is not None:
    result.mean_standard_error = finite_dict(features, standard_error)
  if stats.steps_sum is not None:
    result.mean_steps = stats.per_example(stats.steps_sum)
  group_means = stats.group_means()
  if group_means:
    result.feature_groups = {
        name: {'mean_attribution': float(group_means['mean'][g]),
               'mean_absolute_attribution': float(group_means['mean_abs'][g])}
        for g, name in enumerate(groups) if stats.group_count[g] > 0}
  return result


def ordered_slice_keys(keys) -> List[SliceKey]:
  """Overall first, then by depth and name: the order of Summary.slices and the TFMA file."""
  return sorted(set(keys), key=lambda k: (len(k), layout.slice_name(k)))


def build_summary(plan: SummaryPlan, statistics: Mapping[Tuple[SliceKey, str], SliceStatistics],
                  quantiles: Mapping[QuantileKey, Sequence[float]], skipped_rows: int,
                  compute_seconds: Optional[float]) -> Summary:
  """The summary of one split from its merged statistics. Needs the Overall slice."""
  features = list(plan.features)
  groups = [name for name, _ in plan.feature_groups]
  slices = []
  for key in ordered_slice_keys(k for k, _ in statistics):
    label = layout.slice_name(key)
    methods = {}
    for method in plan.methods:
      stats = statistics.get((key, method))
      if stats is None:
        continue
      entry = method_on_slice(stats, features, groups)
      for name, value in _error_fields(quantiles, method, label).items():
        setattr(entry, name, value)
      methods[method] = entry
    examples = next(statistics[(key, m)].examples for m in plan.methods if (key, m) in statistics)
    slices.append(SliceSummary(label, [list(kv) for kv in key], int(examples), methods))
  if not slices or slices[0].slice != 'Overall':
    raise ValueError(f'No statistics of the Overall slice of split {plan.split!r}.')
  infos = {}
  for method, config, skipped, value_kind in zip(plan.methods, plan.method_configs,
                                                 plan.skipped_features, plan.value_kinds):
    steps = quantiles.get((method, 'Overall', 'steps'))
    infos[method] = MethodInfo(dict(config), list(skipped), value_kind,
                               **_error_fields(quantiles, method, 'Overall'),
                               steps=None if steps is None else Quantiles.of(steps))
  examples = slices[0].examples
  return Summary(
      split=plan.split, examples=examples, skipped_non_finite_rows=int(skipped_rows),
      features=features, output_kind=plan.output_kind, target=plan.target, methods=infos,
      slices=slices, reference_split=plan.reference_split,
      feature_groups={name: list(elements) for name, elements in plan.feature_groups},
      compute_seconds=compute_seconds,
      examples_per_second=examples / compute_seconds if compute_seconds else None,
      image=(ImageInfo(shape=list(plan.image_shape), regions=features)
             if plan.image_shape else None),
      token_summary=layout.TOKEN_SUMMARY_FILE if plan.tokens else '')


def mean_maps(statistics: Mapping[Tuple[SliceKey, str], SliceStatistics]):
  """'<method>|<slice>' -> mean display map, for image models."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  return {f'{method}|{layout.slice_name(key)}': np.asarray(stats.mean_map(), np.float32)
          for (key, method), stats in statistics.items() if stats.map_sum is not None}

// How quality figures read: a share as a percentage, seconds with their unit.

/** 0.5714 -> "57.1 %"; null -> "–". */
export function percent(share) {
  return share === null || share === undefined ? "–" : `${(share * 100).toFixed(1)} %`;
}

/** 61.2 -> "61.2 s"; 0.31 -> "0.31 s"; null -> "–". */
export function seconds(value) {
  if (value === null || value === undefined) return "–";
  return `${value >= 10 ? value.toFixed(1) : value.toFixed(2)} s`;
}

export interface ChartAsset {
  /** The file in the repository (deploy/...). */
  source: string;
  /** Its copy in helm/conntrack-exporter/files/. */
  copy: string;
}
export const CHART_ASSETS: ChartAsset[];
/** The assets whose chart copy is missing or differs from the source. */
export function staleAssets(): ChartAsset[];

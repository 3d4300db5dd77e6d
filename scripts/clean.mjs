// Removes dist/ so a build (and so `npm pack`, whose prepack cleans first) holds no file of a module
// that no longer exists in src/.
import { rmSync } from 'node:fs';

rmSync(new URL('../dist/', import.meta.url), { recursive: true, force: true });

/** `node --import <this file>`: installs ts-hooks.mjs so the child can import `src/*.ts`. */
import { register } from 'node:module';

register('./ts-hooks.mjs', import.meta.url);

// A stand-in for Warren's `warren:task/host` interface, for running compiled guests under
// jco's JavaScript host in the kit's tests. The test sets `globalThis.warrenTestHost`.
const h = () => globalThis.warrenTestHost;
export const execute = (sql, params) => h().execute(sql, params);
export const query = (sql, params) => h().query(sql, params);
export const scheduleTask = (type, data, options) => h().scheduleTask(type, data, options);
export const getMetadata = (key) => h().getMetadata(key);
export const setMetadata = (key, value) => h().setMetadata(key, value);
export const setProgress = (fraction, message) => h().setProgress(fraction, message);
export const log = (level, message) => h().log(level, message);
export const nowMs = () => h().nowMs();

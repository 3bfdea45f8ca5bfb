// JSON.parse loses one thing the contract needs: whether a number was written as an integer.
// The published document's `integer` has no fraction part (OpenAPI 3.0), so 5.0 is refused
// where 5 is taken, as the FastAPI service's strict models do. This parser returns what
// JSON.parse returns, except that a number written with a fraction or an exponent comes back
// as a JsonFloat. Strings are decoded by JSON.parse itself (escapes, surrogate pairs).
"use strict";

class JsonFloat {
  constructor(value) {
    this.value = value;
  }
}

class JsonSyntaxError extends Error {
  constructor(position) {
    super(`JSON decode error at character ${position}`);
    this.position = position;
  }
}

const WS = /[ \t\n\r]*/y;
const NUMBER = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;
const STRING = /"(?:[^"\\\u0000-\u001f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"/y;

function parse(text) {
  let at = 0;
  const fail = () => { throw new JsonSyntaxError(at); };
  const skip = () => { WS.lastIndex = at; WS.exec(text); at = WS.lastIndex; };
  const match = (re) => {
    re.lastIndex = at;
    const m = re.exec(text);
    if (m === null) fail();
    at = re.lastIndex;
    return m;
  };
  function value() {
    skip();
    const c = text[at];
    if (c === "{") {
      at++;
      const object = {};
      skip();
      if (text[at] === "}") { at++; return object; }
      for (;;) {
        skip();
        if (text[at] !== '"') fail();
        const key = JSON.parse(match(STRING)[0]);
        skip();
        if (text[at] !== ":") fail();
        at++;
        Object.defineProperty(object, key, { value: value(), enumerable: true, writable: true, configurable: true });
        skip();
        if (text[at] === ",") { at++; continue; }
        if (text[at] === "}") { at++; return object; }
        fail();
      }
    }
    if (c === "[") {
      at++;
      const array = [];
      skip();
      if (text[at] === "]") { at++; return array; }
      for (;;) {
        array.push(value());
        skip();
        if (text[at] === ",") { at++; continue; }
        if (text[at] === "]") { at++; return array; }
        fail();
      }
    }
    if (c === '"') return JSON.parse(match(STRING)[0]);
    for (const [word, result] of [["true", true], ["false", false], ["null", null]]) {
      if (text.startsWith(word, at)) { at += word.length; return result; }
    }
    const m = match(NUMBER);
    return m[1] || m[2] ? new JsonFloat(Number(m[0])) : Number(m[0]);
  }
  const result = value();
  skip();
  if (at !== text.length) fail();
  return result;
}

module.exports = { parse, JsonFloat, JsonSyntaxError };

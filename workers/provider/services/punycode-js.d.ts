// punycode.js ships no types; @types/punycode describes the same API under the
// name `punycode` (the deprecated Node built-in), so it is reused here.
declare module 'punycode.js' {
  export { decode, encode, toASCII, toUnicode } from 'punycode';
}

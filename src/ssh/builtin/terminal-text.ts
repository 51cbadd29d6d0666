/**
 * Text from the server (its Banner, keyboard-interactive names, instructions and prompts) on
 * the user's terminal. A hostile server could otherwise send escape sequences that rewrite the
 * screen, retitle the window or fake a prompt; OpenSSH filters the same text (fmprintf, strnvis).
 * Control characters other than newline and tab become `\ooo` octal, like vis(3).
 */
export function terminalText(s: string): string {
  return s.replace(/\r\n/g, '\n').replace(/[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, (c) => {
    const code = c.charCodeAt(0)
    return code > 0xff ? `\\u${code.toString(16)}` : `\\${code.toString(8).padStart(3, '0')}`
  })
}

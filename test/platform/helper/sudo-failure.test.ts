import { describe, expect, it } from 'vitest'
import { sudoFailureReason } from '../../../src/platform/helper/sudo-failure'

const HOST = 'sudo: unable to resolve host box: Name or service not known'

describe('why sudo refused (NEED_ROOT message)', () => {
  it('names the real reason, not the first line sudo printed', () => {
    expect(sudoFailureReason(`${HOST}\nalice is not in the sudoers file.  This incident will be reported.`, true, 'alice')).toBe(
      'not root, and alice is not in the sudoers file (sudo refuses every command)',
    )
    expect(sudoFailureReason(`${HOST}\nSorry, user alice may not run sudo on box.`, true, 'alice')).toBe('not root, and alice may not run sudo on this host')
    expect(sudoFailureReason(`${HOST}\nSorry, user alice is not allowed to execute '/usr/bin/node /opt/x/helper-main.js' as root on box.`, true, 'alice')).toBe(
      "not root, and sudo does not allow alice to run the helper: Sorry, user alice is not allowed to execute '/usr/bin/node /opt/x/helper-main.js' as root on box.",
    )
    expect(sudoFailureReason(`${HOST}\nSorry, try again.\nSorry, try again.\nsudo: 3 incorrect password attempts`, true, 'alice')).toBe('sudo: 3 incorrect password attempts')
    expect(sudoFailureReason(`${HOST}\nsudo: a password is required`, false, 'alice')).toBe('not root and sudo is not available without a password')
    expect(sudoFailureReason(`${HOST}\nsudo: PAM account management error: Authentication service cannot retrieve authentication info`, true, 'alice')).toBe(
      'sudo failed: PAM account management error: Authentication service cannot retrieve authentication info',
    )
    expect(sudoFailureReason(HOST, true, 'alice')).toBe('sudo failed without saying why')
  })
})

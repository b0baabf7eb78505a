// The PAM service file for accounts = "system" (README, "Using the box's Unix accounts"), as
// `mailsrv init --accounts system` writes it to /etc/pam.d/<pam_service>: the Unix password
// (pam_unix: yescrypt, SHA-512, whatever /etc/shadow holds), then the account checks (a locked or
// expired account is refused). `nodelay`: mailsrv's own failure delay and lockout (README,
// "Logins") apply to every failed login; pam_unix's two seconds on top would only hold a helper
// thread. Sites with LDAP or sssd put their own stack here instead (e.g. @include common-auth).
export const PAM_SERVICE_TEXT = `#%PAM-1.0
# mailsrv: SMTP AUTH and POP3 logins of the box's Unix accounts (accounts = "system").
auth     required  pam_unix.so nodelay
account  required  pam_unix.so
`;

/** Where PAM looks for service files. */
export const PAM_SERVICE_DIR = '/etc/pam.d';

/** A sign-up, as the task's data holds it once validated. */
export interface Signup {
  name: string;
  email: string;
}

/** The greeting for a sign-up: the name, and the mail domain it came from. */
export function greeting(signup: Signup): string {
  const domain = signup.email.split('@')[1];
  return `Welcome, ${signup.name} (from ${domain})!`;
}

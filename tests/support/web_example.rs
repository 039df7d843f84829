//! The web example's pages in a [`Browser`]: signing in, its Connect button, the sandbox's
//! consent page, and the Withings user a row shows.

use std::time::Duration;

use fantoccini::Locator;
use url::Url;
use withings_sandbox::User;

use crate::Browser;

/// How long a page may take: generous, as Chromium on a busy machine is slow.
pub const PAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Signs in at `base` as demo account `app_user` (signing out whoever was signed in); the
/// browser ends on the home page of `app_user`.
pub async fn sign_in(browser: &Browser, base: &Url, app_user: &str) {
    let web = browser.webdriver();
    web.goto(base.as_str()).await.expect("the home page loads");
    if let Ok(sign_out) = web.find(Locator::Id("sign-out")).await {
        sign_out.click().await.expect("clicking Sign out");
    }
    let form = web
        .wait()
        .at_most(PAGE_TIMEOUT)
        .for_element(Locator::Id("sign-in-form"))
        .await
        .expect("the sign-in form");
    form.find(Locator::Id("name"))
        .await
        .expect("a name field")
        .send_keys(app_user)
        .await
        .expect("typing the name");
    form.find(Locator::Id("password"))
        .await
        .expect("a password field")
        .send_keys(&withings_oauth_web_example::demo_password(app_user))
        .await
        .expect("typing the password");
    form.find(Locator::Id("sign-in"))
        .await
        .expect("a Sign in button")
        .click()
        .await
        .expect("clicking Sign in");
    // The sign-in page itself has a sign-in form, so wait for the page that names the user
    // rather than for either element.
    let shown = web
        .wait()
        .at_most(PAGE_TIMEOUT)
        .for_element(Locator::Id("signed-in-as"))
        .await
        .expect("the home page of the signed-in user");
    assert_eq!(shown.text().await.expect("its text"), app_user);
}

/// Who the home page the browser is on says is signed in.
pub async fn signed_in_as(browser: &Browser) -> Option<String> {
    let web = browser.webdriver();
    web.wait()
        .at_most(PAGE_TIMEOUT)
        .for_element(Locator::Css("#signed-in-as, #sign-in-form"))
        .await
        .expect("a home page");
    let shown = web.find(Locator::Id("signed-in-as")).await.ok()?;
    Some(shown.text().await.expect("its text"))
}

/// On `base`'s home page, signed in as `app_user` (signing in first when someone else, or
/// nobody, is), clicks "Connect Withings"; the browser ends on the sandbox's consent page.
pub async fn click_connect(browser: &Browser, base: &Url, app_user: &str) {
    let web = browser.webdriver();
    web.goto(base.as_str()).await.expect("the home page loads");
    if signed_in_as(browser).await.as_deref() != Some(app_user) {
        sign_in(browser, base, app_user).await;
    }
    web.wait()
        .at_most(PAGE_TIMEOUT)
        .for_element(Locator::Id("connect"))
        .await
        .expect("a Connect button")
        .click()
        .await
        .expect("clicking Connect");
    web.wait()
        .at_most(PAGE_TIMEOUT)
        .for_element(Locator::Id("consent-form"))
        .await
        .expect("the sandbox's consent page");
}

/// On the consent page, logs in as sandbox user number `i` and clicks Allow (or Deny).
pub async fn consent(browser: &Browser, i: u32, allow: bool) {
    let user = User::numbered(i);
    let web = browser.webdriver();
    let email = web
        .find(Locator::Id("email"))
        .await
        .expect("an email field");
    email.clear().await.expect("clearing the email field");
    email
        .send_keys(&user.email)
        .await
        .expect("typing the email");
    web.find(Locator::Id("password"))
        .await
        .expect("a password field")
        .send_keys(&user.password)
        .await
        .expect("typing the password");
    web.find(Locator::Id(if allow { "allow" } else { "deny" }))
        .await
        .expect("the consent buttons")
        .click()
        .await
        .expect("clicking");
}

/// The Withings user shown in `app_user`'s row of the home page the browser is on.
pub async fn shown_withings_user(browser: &Browser, app_user: &str) -> Option<u64> {
    let web = browser.webdriver();
    let row = web
        .wait()
        .at_most(PAGE_TIMEOUT)
        .for_element(Locator::Id(&format!("user-{app_user}")))
        .await
        .expect("the user's row on the home page");
    let shown = row.find(Locator::Css(".withings-user")).await.ok()?;
    let user = shown
        .attr("data-withings-user")
        .await
        .expect("an attribute")?;
    Some(user.parse().expect("a numeric user id"))
}

/// The last weight shown in `app_user`'s row of the home page the browser is on (`"72.5 kg"`).
pub async fn shown_weight(browser: &Browser, app_user: &str) -> String {
    browser
        .webdriver()
        .find(Locator::Css(&format!("#user-{app_user} .weight")))
        .await
        .unwrap_or_else(|e| panic!("{app_user}'s last weight: {e}"))
        .text()
        .await
        .expect("its text")
}

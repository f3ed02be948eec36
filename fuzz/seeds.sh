#!/usr/bin/env bash
# Makes seed corpora for the fuzz targets with the openssl CLI (a throwaway key pair): a
# signed entity, an encrypted message, and plain text. Run from fuzz/: ./seeds.sh
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tmp/k.pem" -out "$tmp/c.pem" -days 2 \
    -subj "/CN=seed" -addext "subjectAltName=email:a@hisp-a.example" 2>/dev/null
printf 'Content-Type: message/rfc822\r\n\r\nFrom: a@hisp-a.example\r\nTo: b@hisp-b.example\r\nSubject: s\r\n\r\nbody\r\n' > "$tmp/entity"
mkdir -p corpus/smime_signed_entity corpus/smime_inbound
openssl cms -sign -in "$tmp/entity" -signer "$tmp/c.pem" -inkey "$tmp/k.pem" -md sha256 -binary -crlfeol \
    > corpus/smime_signed_entity/signed.eml
openssl cms -sign -in "$tmp/entity" -signer "$tmp/c.pem" -inkey "$tmp/k.pem" -md sha256 -nodetach -binary \
    > corpus/smime_signed_entity/opaque.eml
cp "$tmp/entity" corpus/smime_signed_entity/plain.eml
for c in aes-128-cbc aes-256-gcm; do
    openssl cms -encrypt -in corpus/smime_signed_entity/signed.eml -binary "-$c" -recip "$tmp/c.pem" \
        > "corpus/smime_inbound/$c.eml"
done
cp "$tmp/entity" corpus/smime_inbound/plain.eml
# CERT rdata: type PKIX (1), key tag 0, algorithm 0, the DER; and IPKIX (4) with a URL.
mkdir -p corpus/dns_cert_rdata corpus/notify_parse corpus/config_parse
openssl x509 -in "$tmp/c.pem" -outform DER -out "$tmp/c.der"
{ printf '\x00\x01\x00\x00\x00'; cat "$tmp/c.der"; } > corpus/dns_cert_rdata/pkix.bin
printf '\x00\x04\x00\x00\x00http://ca.example/bob.cer' > corpus/dns_cert_rdata/ipkix.bin
printf 'Content-Type: multipart/report; report-type=disposition-notification; boundary=b\r\n\r\n--b\r\nContent-Type: message/disposition-notification\r\n\r\nFinal-Recipient: rfc822;b@hisp-b.example\r\nOriginal-Message-ID: <1@a>\r\nDisposition: automatic-action/MDN-sent-automatically; processed\r\n\r\n--b--\r\n' > corpus/notify_parse/mdn.eml
printf 'Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nfailed\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.hisp-b.example\r\n\r\nFinal-Recipient: rfc822;b@hisp-b.example\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n--b\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <1@a>\r\n\r\n--b--\r\n' > corpus/notify_parse/dsn.eml
cp ../config/hisp.toml corpus/config_parse/hisp.toml
# SMTP sessions: first byte even = inbound listener, odd = submission.
mkdir -p corpus/smtp_session
printf '\x00EHLO c.example\r\nMAIL FROM:<x@hisp-b.example> SIZE=100 BODY=8BITMIME\r\nRCPT TO:<alice@hisp-a.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;alice+2B@hisp-a.example\r\nDATA\r\nSubject: s\r\n\r\n..dot\r\n.\r\nRSET\r\nNOOP\r\nVRFY x\r\nQUIT\r\n' > corpus/smtp_session/inbound.txt
printf '\x01EHLO c.example\r\nAUTH PLAIN AGFsaWNlQGhpc3AtYS5leGFtcGxlAHNlY3JldA==\r\nMAIL FROM:<alice@hisp-a.example>\r\nRCPT TO:<b@hisp-b.example>\r\nDATA\r\nFrom: alice@hisp-a.example\r\n\r\nhi\r\n.\r\nQUIT\r\n' > corpus/smtp_session/submission.txt
printf '\x01EHLO c\r\nAUTH LOGIN\r\nYWxpY2VAaGlzcC1hLmV4YW1wbGU=\r\nc2VjcmV0\r\nSTARTTLS\r\nBDAT 5 LAST\r\nhello' > corpus/smtp_session/login.txt
# Trust bundles: a certs-only .p7b in DER and PEM, one signed around it, and an XML wrapper.
mkdir -p corpus/trust_bundle_parse
openssl crl2pkcs7 -nocrl -certfile "$tmp/c.pem" -outform DER -out corpus/trust_bundle_parse/bundle.p7b
openssl crl2pkcs7 -nocrl -certfile "$tmp/c.pem" -out corpus/trust_bundle_parse/bundle.pem
openssl cms -sign -in corpus/trust_bundle_parse/bundle.p7b -signer "$tmp/c.pem" -inkey "$tmp/k.pem" \
    -binary -nodetach -outform DER -out corpus/trust_bundle_parse/signed.p7m
{ printf '<?xml version="1.0"?>\n<TrustBundle><Name>seed</Name><Content>'
  openssl base64 -in corpus/trust_bundle_parse/bundle.p7b; printf '</Content></TrustBundle>\n'; } \
    > corpus/trust_bundle_parse/wrapped.xml
echo "seeds written under fuzz/corpus/"

#!/usr/bin/env bash
# Makes a development PKI for one Direct domain with the openssl CLI: a root CA, a
# domain-bound certificate (SAN dNSName) and one address-bound certificate (SAN rfc822Name)
# per address, each with its key as PKCS#12. For development and demos only.
#
#   certs/make-dev-pki.sh OUTDIR DOMAIN [ADDRESS...]
#
# Writes OUTDIR/ca.pem, ca.key, DOMAIN.p12 and ADDRESS.p12 files (password: $P12_PASSWORD,
# default "dev"). Import with:
#   hisp cert import --p12 OUTDIR/DOMAIN.p12 --password-env P12_PASSWORD
#   hisp anchor add --domain PARTNER_DOMAIN --file OUTDIR/ca.pem
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 OUTDIR DOMAIN [ADDRESS...]" >&2
    exit 2
fi
out=$1; domain=$2; shift 2
password=${P12_PASSWORD:-dev}
mkdir -p "$out"
umask 077

if [ ! -f "$out/ca.pem" ]; then
    echo "making root CA for $domain in $out/ca.pem"
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 \
        -keyout "$out/ca.key" -out "$out/ca.pem" -subj "/O=hisp development/CN=$domain dev root" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -addext "subjectKeyIdentifier=hash" 2>/dev/null
fi

issue() { # name san
    local name=$1 san=$2 ext
    ext=$(mktemp)
    cat >"$ext" <<EXT
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=emailProtection
subjectAltName=$san
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
EXT
    openssl req -new -newkey rsa:2048 -nodes -sha256 -keyout "$out/$name.key" \
        -out "$out/$name.csr" -subj "/O=hisp development/CN=$name" 2>/dev/null
    openssl x509 -req -in "$out/$name.csr" -CA "$out/ca.pem" -CAkey "$out/ca.key" \
        -CAcreateserial -days 825 -sha256 -extfile "$ext" -out "$out/$name.pem" 2>/dev/null
    openssl pkcs12 -export -in "$out/$name.pem" -inkey "$out/$name.key" -certfile "$out/ca.pem" \
        -name "$name" -passout "pass:$password" -out "$out/$name.p12"
    rm -f "$ext" "$out/$name.csr"
    echo "issued $out/$name.p12 ($san)"
}

issue "$domain" "DNS:$domain"
for address in "$@"; do
    issue "$address" "email:$address"
done

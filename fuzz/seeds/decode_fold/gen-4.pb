8
cust-000109-subcust-000109€òÖÊ Š
proúèƒÍK
cust-000109-220cust-000109 ªäÊ R!
o-cust-000109-220š™™™™9U@EURK
cust-000109-523cust-000109€ÍÿÊ R!
o-cust-000109-523®Gáz´R@EUR4
cust-000109-556cust-000109¹úƒË r

question5
cust-000109-1476cust-000109øÉğË r

questionM
cust-000109-1803cust-000109‚¡Ì R"
o-cust-000109-1803=
×£pEh@EUR5
cust-000109-2253cust-000109øèğÌ r

question